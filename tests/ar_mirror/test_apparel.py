"""Garments on the live body, on frames made from scikit-image's astronaut photo (head, shoulders, torso).

The body is found by the real MediaPipe pose and person mask; a garment
from products.yaml is drawn on it. What is checked: the torso between the
detected shoulders is covered, the face and the background are not; a
forearm and hand raised in front of the chest stay in front of the shirt;
the view (face close up, body stepped back, nobody) and the size estimate.

The raised hand is composed: a skin-coloured forearm (an ellipse) and hand
(a disc) pasted on the chest, and the pose's elbow and wrist set to its two
ends, as the pose reports a raised hand. The photo has no raised arm for
the pose to find, so the test fixes the joints and checks the drawing's
rule: forearm and hand pixels (a capsule from the elbow to past the wrist,
inside the person mask) are kept in front of the torso piece.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

np = pytest.importorskip("numpy")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")
pytest.importorskip("skimage")

from ar_mirror import apparel, products, synthetic  # noqa: E402
from ar_mirror.body import POSE_33, Body, ShoulderEstimate, choose_view  # noqa: E402
from ar_mirror.control import Look  # noqa: E402
from ar_mirror.pipeline import Pipeline  # noqa: E402

SIZE = (1280, 720)
# The photo at 600x600 with its top-left corner here: head, shoulders and torso, grey wall around.
PLACE, SIDE = (340, 30), 600
SKIN = (120, 160, 215)  # BGR


@pytest.fixture(scope="module")
def module_body_tracker() -> Iterator:
    from ar_mirror.mediapipe_body import MediapipeBodyTracker

    tracker = MediapipeBodyTracker()
    yield tracker
    tracker.close()


@pytest.fixture
def body_tracker(module_body_tracker):
    """The module's body tracker, following nobody yet."""
    module_body_tracker.reset()
    return module_body_tracker


def body_frame(photo) -> np.ndarray:
    frame = np.full((SIZE[1], SIZE[0], 3), synthetic.BACKGROUND, np.uint8)
    x, y = PLACE
    frame[y:y + SIDE, x:x + SIDE] = cv2.resize(photo, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    return frame


def find(tracker, frame, mask=True) -> Body:
    tracker.reset()
    body = None
    for _ in range(3):  # detection, then tracking
        body = tracker.track(frame, mask=mask)
    assert body is not None
    return body


def step_back(pipeline: Pipeline, frame: np.ndarray, look: Look | None = None) -> int:
    """Frames of ``frame`` until the pipeline is in body view (at most 90)."""
    for i in range(1, 91):
        pipeline.track(frame, 1 + i / 30, look)
        if pipeline.view == "body":
            return i
    return 91


def layer(sku: str):
    return products.load()[sku].layer(sku)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > 30


def test_the_top_covers_the_torso_between_the_shoulders_not_the_face_nor_the_background(body_tracker, photo):
    frame = body_frame(photo)
    body = find(body_tracker, frame)
    assert choose_view(body, False, SIZE) == "body"
    drawn = frame.copy()
    apparel.draw(drawn, body, layer("TEE-CREW-NAVY"))
    diff = changed(drawn, frame)
    right, left = body.joint("shoulder_right"), body.joint("shoulder_left")
    hips = (body.joint("hip_right") + body.joint("hip_left")) / 2
    # A grid over the chest: between the shoulders, from a little under them to half way down to the hips.
    covered = []
    for s in np.linspace(0.15, 0.85, 8):
        for d in np.linspace(0.15, 0.5, 6):
            top = right + s * (left - right)
            x, y = np.round(top + d * (hips - (right + left) / 2)).astype(int)
            covered.append(diff[y, x])
    assert np.mean(covered) > 0.95
    # The navy of the T-shirt, with the light under it: blue dominant on the chest.
    cx, cy = np.round((right + left) / 2 + 0.3 * (hips - (right + left) / 2)).astype(int)
    b, g, r = drawn[cy, cx].astype(int)
    assert b > r and b > g
    # The face: a box around it (the photo's face, moved into the frame) is untouched.
    scale = SIDE / 512
    fx, fy = PLACE[0] + synthetic.PHOTO_FACE_CENTRE[0] * scale, PLACE[1] + synthetic.PHOTO_FACE_CENTRE[1] * scale
    half = synthetic.PHOTO_FACE_WIDTH * scale * 0.45
    assert not diff[int(fy - half):int(fy + half * 0.9), int(fx - half):int(fx + half)].any()
    # The background (grey wall around the photo) is never painted.
    outside = np.ones(diff.shape, bool)
    outside[PLACE[1]:PLACE[1] + SIDE, PLACE[0]:PLACE[0] + SIDE] = False
    assert not diff[outside].any()


@pytest.mark.parametrize("sku", ["SHIRT-OXF-BLUE", "JKT-BOMBER-OLIVE"])
def test_every_garment_stays_on_the_person(body_tracker, photo, sku):
    frame = body_frame(photo)
    body = find(body_tracker, frame)
    drawn = frame.copy()
    apparel.draw(drawn, body, layer(sku))
    diff = changed(drawn, frame)
    assert diff.sum() > 20_000  # a garment, not a few pixels
    person = apparel.person_mask(body, (0, 0, SIZE[0], SIZE[1]), frame.shape)
    assert not diff[person < 0.02].any()


def test_a_hand_raised_in_front_of_the_chest_stays_in_front(body_tracker, photo):
    frame = body_frame(photo)
    found = find(body_tracker, frame)
    right, left = found.joint("shoulder_right"), found.joint("shoulder_left")
    hips = (found.joint("hip_right") + found.joint("hip_left")) / 2
    chest = (right + left) / 2 + 0.35 * (hips - (right + left) / 2)
    # The person's left forearm across the chest: elbow low at the side, wrist in the middle of the chest.
    elbow = left + 0.75 * (hips - (right + left) / 2) + (left - right) * 0.1
    wrist = chest - (left - right) * 0.1
    length = float(np.linalg.norm(wrist - elbow))
    centre = tuple(np.round((elbow + wrist) / 2).astype(int))
    angle = float(np.degrees(np.arctan2(*(wrist - elbow)[::-1])))
    hand_at = wrist + (wrist - elbow) * 0.25
    composed = frame.copy()
    cv2.ellipse(composed, centre, (round(length / 2), round(0.11 * length)), angle, 0, 360, SKIN, -1)
    cv2.circle(composed, tuple(np.round(hand_at).astype(int)), round(0.16 * length), SKIN, -1)
    skin = np.all(composed == SKIN, axis=2)
    # The joints of the photo's body as found without the arm (a pasted arm is no arm to the pose model: it
    # moves the shoulders it guesses), the person mask of the frame with the arm.
    body = Body(found.points, found.visibility, found.skeleton, find(body_tracker, composed).mask)
    points, vis = body.points.copy(), body.visibility.copy()
    points[POSE_33.elbow_left], points[POSE_33.wrist_left] = elbow, wrist
    vis[POSE_33.elbow_left] = vis[POSE_33.wrist_left] = 1.0
    raised = Body(points, vis, body.skeleton, body.mask)
    drawn = composed.copy()
    apparel.draw(drawn, raised, layer("TEE-CREW-NAVY"))
    diff = changed(drawn, composed)
    inner = cv2.erode(skin.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert inner.sum() > 2000
    assert diff[inner].mean() < 0.01  # the forearm and hand are in front of the shirt
    # ...and the shirt is there, around them: the chest on the other side of the body is covered.
    x, y = np.round(right + 0.2 * (left - right) + 0.5 * (hips - (right + left) / 2)).astype(int)
    assert diff[y - 3:y + 4, x - 3:x + 4].all()
    # Without the raised-arm joints the same pixels would be painted: the rule did it, not luck.
    painted = composed.copy()
    apparel.draw(painted, Body(body.points, np.where(np.arange(33) == POSE_33.wrist_left, 0.0, body.visibility),
                               body.skeleton, body.mask), layer("TEE-CREW-NAVY"))
    assert changed(painted, composed)[inner].mean() > 0.5


def test_the_view_close_up_face_stepped_back_body_nobody_none(body_tracker, tracker, photo):
    pipeline = Pipeline(tracker, body_tracker=body_tracker)
    close = synthetic.render(photo, synthetic.still(SIZE), SIZE)  # the face a third of the frame's height
    for i in range(4):
        pipeline.track(close, i / 30)
    assert pipeline.view == "face" and pipeline.face is not None
    far = body_frame(photo)
    # The customer steps back: the pose (run on one frame in three in face view) takes her hips as seen
    # within a couple of seconds of frames (MediaPipe smooths a joint's visibility over frames).
    frames = step_back(pipeline, far)
    assert frames <= 60 and pipeline.drawn_body() is not None
    pipeline.track(far, 3.0)
    assert pipeline.face is None  # no face layer in the look: the face mesh rests in body view
    pipeline.track(far, 3.1, Look(layers=(layer("GLS-ROUND-BLK"),)))
    assert pipeline.face is not None  # glasses worn: the face is followed in body view too
    empty = np.full((SIZE[1], SIZE[0], 3), synthetic.BACKGROUND, np.uint8)
    for i in range(12):
        pipeline.track(empty, 4 + i / 30)
    assert pipeline.view == "none" and not pipeline.present()


def test_process_draws_the_garment_in_body_view_only(body_tracker, tracker, photo):
    pipeline = Pipeline(tracker, body_tracker=body_tracker)
    look = Look(layers=(layer("TEE-CREW-NAVY"),))
    close = synthetic.render(photo, synthetic.still(SIZE), SIZE)
    for i in range(4):
        out = close.copy()
        pipeline.process(out, i / 30, look)
    assert pipeline.view == "face" and not changed(out, close).any()  # "step back to try on clothes"
    far = body_frame(photo)
    assert step_back(pipeline, far, look) <= 60
    out = far.copy()
    pipeline.process(out, 3.0, look)
    assert pipeline.view == "body" and changed(out, far).sum() > 20_000
    assert pipeline.body is not None and pipeline.body.mask is not None  # a garment asks for the person mask


def test_the_shoulder_width_uses_the_eyes_as_the_ruler():
    points = np.zeros((33, 2), np.float32)
    vis = np.ones(33, np.float32)
    points[POSE_33.eye_right], points[POSE_33.eye_left] = (500, 200), (563, 200)  # 63 px: 1 px is 1 mm
    points[POSE_33.shoulder_right], points[POSE_33.shoulder_left] = (460, 400), (820, 400)  # 36 cm of joints
    points[POSE_33.hip_right], points[POSE_33.hip_left] = (520, 700), (760, 700)
    body = Body(points, vis, POSE_33)
    assert body.shoulder_cm() == pytest.approx(36 * 1.1)
    assert body.in_view(SIZE) and not body.in_view((1280, 600))  # hips below the picture: not body view
    vis[POSE_33.hip_left] = 0.2
    assert not Body(points, vis, POSE_33).in_view(SIZE)  # a hip guessed, not seen: not body view either
    vis[POSE_33.hip_left] = 1.0
    assert products.suggest_size(products.load()["TEE-CREW-NAVY"].sizes, body.shoulder_cm()) == "S"
    estimate = ShoulderEstimate()
    for value in (39.0, 40.0, 80.0, 39.5, 40.5):  # one wild frame does not move the median
        estimate.add(value)
    assert estimate.cm() == 40
    vis[POSE_33.eye_left] = 0.1
    assert Body(points, vis, POSE_33).shoulder_cm() is None


def test_the_astronauts_estimate_is_a_plausible_shoulder_width(body_tracker, photo):
    cm = find(body_tracker, body_frame(photo), mask=False).shoulder_cm()
    assert cm is not None and 20 < cm < 60


class CountingBody:
    """A BodyTracker standing still at fixed joints, counting what the pipeline asks of it."""

    skeleton = POSE_33

    def __init__(self, points: np.ndarray):
        self.points = points
        self.poses = self.masks = 0

    def track(self, frame, mask=False):
        self.poses += 1
        self.masks += mask
        return Body(self.points.copy(), np.ones(33, np.float32), POSE_33, np.ones((144, 256), np.float32)
                    if mask else None)

    def segment(self, frame):
        self.masks += 1
        return np.ones((144, 256), np.float32)

    def reset(self):
        pass

    def close(self):
        pass


class NoFace:
    def track(self, frame):
        return None

    def reset(self):
        pass

    def close(self):
        pass


def test_in_body_view_the_pose_runs_every_other_frame_and_the_mask_every_frame():
    points = np.zeros((33, 2), np.float32)
    points[[12, 11, 24, 23]] = [(500, 200), (700, 200), (520, 500), (680, 500)]
    body = CountingBody(points)
    pipeline = Pipeline(NoFace(), body_tracker=body)
    frame = np.zeros((720, 1280, 3), np.uint8)
    look = Look(layers=(layer("TEE-CREW-NAVY"),))
    pipeline.track(frame, 0.0, look)
    assert pipeline.view == "body"
    body.poses = body.masks = 0
    for i in range(1, 11):
        body.points = points + (4.0 * i, 0)  # the customer moves 4 px a frame to the right
        pipeline.track(frame, i / 30, look)
        assert pipeline.body is not None and pipeline.body.mask is not None
        # Carried on at its speed on the frames the pose skips: where the body is, within a pixel.
        if i >= 3:
            assert np.allclose(pipeline.body.joint("shoulder_right"), (500 + 4.0 * i, 200), atol=1)
    assert body.poses == 5 and body.masks == 10
    # Without a garment, no mask at all.
    body.masks = 0
    for i in range(11, 15):
        pipeline.track(frame, i / 30, Look())
    assert body.masks == 0 and pipeline.body.mask is None
