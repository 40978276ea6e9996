"""Face landmarks on the real photo: found, where the eyes are, for near and distant faces."""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from ar_mirror import synthetic  # noqa: E402
from ar_mirror.landmarks import FACE_MESH_468  # noqa: E402
from ar_mirror.mediapipe_tracker import _face_solutions  # noqa: E402


def _track(tracker, frame, times=2):
    """The landmarks after a couple of frames (the first one runs the detector)."""
    found = None
    for _ in range(times):
        found = tracker.track(frame)
    return found


def _eye_error(face, pose) -> float:
    """How far the found eye centres are from the true ones, in face widths."""
    expected = pose.apply(synthetic.PHOTO_EYES)
    return float(np.linalg.norm(np.array(face.eye_centres()) - expected, axis=1).max()) / pose.face


@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
def test_landmarks_are_found_on_the_photo(tracker, photo, size):
    pose = synthetic.still(size)
    face = _track(tracker, synthetic.render(photo, pose, size))
    assert face is not None
    assert face.points.shape == (468, 2) and face.topology is FACE_MESH_468
    assert _eye_error(face, pose) < 0.015  # 3.6 px on a 240 px face
    oval = face.region(FACE_MESH_468.face_oval)
    assert abs(face.face_width() - pose.face) < 0.15 * pose.face
    assert cv2.pointPolygonTest(oval.astype(np.float32), tuple(map(float, pose.apply([synthetic.PHOTO_FACE_CENTRE])[0])),
                                False) > 0


def test_a_distant_face_is_found_by_the_long_range_detector_and_zoomed(tracker, photo):
    size = (1280, 720)
    pose = synthetic.Pose(900, 300, 80)  # 80 px wide: a customer two metres away
    frame = synthetic.render(photo, pose, size)
    face_mesh, _ = _face_solutions()
    with face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as bare:
        assert bare.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)).multi_face_landmarks is None
    face = _track(tracker, frame)
    assert face is not None
    assert _eye_error(face, pose) < 0.015  # 3.6 px on a 240 px face


def test_the_detector_runs_only_when_the_face_is_lost(tracker, photo):
    size = (640, 480)
    before = tracker.detections
    for i in range(30):
        assert tracker.track(synthetic.render(photo, synthetic.moving(i, size), size)) is not None
    assert tracker.detections - before == 1
    assert tracker.track(np.full((480, 640, 3), 100, np.uint8)) is None
    assert tracker.track(synthetic.render(photo, synthetic.still(size), size)) is not None
    assert tracker.detections - before == 2


def test_no_face_no_landmarks(tracker):
    assert tracker.track(np.full((480, 640, 3), 90, np.uint8)) is None


def test_the_topology_follows_mediapipes_mesh_edges():
    from mediapipe.python.solutions import face_mesh_connections as c

    def edges(loop, closed=True):
        pairs = list(zip(loop, loop[1:] + ((loop[0],) if closed else ())))
        return {frozenset(p) for p in pairs}

    t = FACE_MESH_468
    assert edges(t.lips_outer) | edges(t.lips_inner) <= {frozenset(e) for e in c.FACEMESH_LIPS}
    assert edges(t.face_oval) <= {frozenset(e) for e in c.FACEMESH_FACE_OVAL}
    assert edges(t.right_eye) <= {frozenset(e) for e in c.FACEMESH_RIGHT_EYE}
    assert edges(t.left_eye) <= {frozenset(e) for e in c.FACEMESH_LEFT_EYE}
    assert edges(t.right_upper_lid, closed=False) <= {frozenset(e) for e in c.FACEMESH_RIGHT_EYE}
    assert edges(t.left_upper_lid, closed=False) <= {frozenset(e) for e in c.FACEMESH_LEFT_EYE}
    assert edges(t.right_brow_lower, closed=False) <= {frozenset(e) for e in c.FACEMESH_RIGHT_EYEBROW}
    assert edges(t.left_brow_lower, closed=False) <= {frozenset(e) for e in c.FACEMESH_LEFT_EYEBROW}
