// Scanning: the camera (the browser's BarcodeDetector where it exists, else the vendored decoder,
// barcode-detector on zxing-wasm, whose .wasm comes from this agent, never a CDN) and a Bluetooth ring
// scanner that types as a keyboard (a burst of keys ending in Enter).

import { $ } from './ui.js';

const WASM = '/pad/static/vendor/barcode-detector/zxing_reader.wasm';
const FORMATS = ['qr_code', 'ean_13', 'ean_8', 'upc_a', 'upc_e', 'code_128', 'code_39', 'itf', 'data_matrix'];

let detector = null;

/** The detector: the browser's own when it reads these formats, else the vendored one. */
export async function getDetector() {
  if (detector) return detector;
  if ('BarcodeDetector' in window) {
    try {
      const have = await window.BarcodeDetector.getSupportedFormats();
      const formats = FORMATS.filter((f) => have.includes(f));
      if (formats.includes('qr_code') && formats.includes('ean_13')) {
        detector = new window.BarcodeDetector({ formats });
        return detector;
      }
    } catch { /* no usable native detector: the vendored one below */ }
  }
  const mod = await import('./vendor/barcode-detector/ponyfill.js');
  mod.prepareZXingModule({
    overrides: { locateFile: (path, prefix) => (path.endsWith('.wasm') ? WASM : prefix + path) },
    fireImmediately: true,
  });
  detector = new mod.BarcodeDetector({ formats: FORMATS });
  return detector;
}

let stream = null;
let cancelScan = null;

function stopCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $('camera-video').srcObject = null;
  $('camera').hidden = true;
}

// Why getUserMedia gave no camera, in words an associate acts on (the browser's own message is for developers).
const CAMERA_WORDS = {
  NotFoundError: 'No camera found on this device',
  OverconstrainedError: 'No camera found on this device',
  NotAllowedError: 'The camera is not allowed for this page (allow it in the browser\'s site settings)',
  SecurityError: 'The camera is not allowed for this page (allow it in the browser\'s site settings)',
  NotReadableError: 'The camera is in use by another app',
  AbortError: 'The camera did not start',
};

function cameraTrouble(err) {
  return `${CAMERA_WORDS[err?.name] || 'The camera did not start'}: type the code or use a ring scanner.`;
}

/**
 * Opens the camera over the app and resolves to the first code read, or null when cancelled.
 * Frames are read in the page and never leave it.
 */
export async function scanWithCamera(what = 'the code') {
  if (cancelScan) cancelScan();
  const box = $('camera');
  const msg = $('camera-msg');
  const video = $('camera-video');
  msg.textContent = `Point the camera at ${what}`;
  box.hidden = false;
  let done = false;
  return new Promise((resolve) => {
    const finish = (value) => {
      if (done) return;
      done = true;
      cancelScan = null;
      stopCamera();
      resolve(value);
    };
    cancelScan = () => finish(null);
    $('camera-close').onclick = () => finish(null);
    (async () => {
      if (!navigator.mediaDevices?.getUserMedia) {
        msg.textContent = 'This browser gives no camera to this page: type the code, or use the ring scanner.';
        return;
      }
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
      } catch (err) {
        msg.textContent = cameraTrouble(err);
        return;
      }
      if (done) { stopCamera(); return; }
      video.srcObject = stream;
      await video.play().catch(() => {});
      let reader;
      try {
        reader = await getDetector();
      } catch (err) {
        msg.textContent = `The code reader did not load (${err.message || err}): type the code.`;
        return;
      }
      while (!done) {
        if (video.readyState >= 2) {
          try {
            const found = await reader.detect(video);
            const code = found.find((c) => c.rawValue)?.rawValue;
            if (code) { finish(code.trim()); return; }
          } catch { /* a frame it could not read: try the next */ }
        }
        await new Promise((r) => setTimeout(r, 120));
      }
    })();
  });
}

/**
 * A ring scanner types the code and Enter, a few ms a key (Bluetooth adds some jitter; a person types 100 ms
 * or more apart). Keys that come that fast while no field has the focus are gathered and handed to onScan(code) at Enter; slower typing is left alone. A focused scan field
 * needs nothing of this: the burst lands in it and Enter submits its form.
 */
export function listenForRingScanner(onScan, { gapMs = 80, minLength = 3 } = {}) {
  let buf = '';
  let last = 0;
  document.addEventListener('keydown', (e) => {
    const target = e.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement
        || target instanceof HTMLSelectElement) return;
    if (e.ctrlKey || e.altKey || e.metaKey) return;
    const now = performance.now();
    if (now - last > gapMs) buf = '';
    last = now;
    if (e.key === 'Enter') {
      if (buf.length >= minLength) { e.preventDefault(); onScan(buf); }
      buf = '';
    } else if (e.key.length === 1 && buf.length < 200) {
      buf += e.key;
    }
  });
}
