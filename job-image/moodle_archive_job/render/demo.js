// Demo mode: a diagonal "DEMO MODE" watermark on every printed page and a banner on top.
// position: fixed elements are repeated on each page when Chromium prints.
(() => {
  const watermark = document.createElement('div');
  watermark.textContent = 'DEMO MODE';
  watermark.setAttribute('aria-hidden', 'true');
  watermark.style.cssText = [
    'position: fixed', 'top: 50%', 'left: 50%', 'z-index: 2147483647',
    'transform: translate(-50%, -50%) rotate(-45deg)', 'pointer-events: none',
    'font: bold 120px sans-serif', 'color: rgba(200, 0, 0, 0.18)', 'white-space: nowrap',
  ].join(';');
  const banner = document.createElement('div');
  banner.textContent = 'This report was archived in demo mode. It is not a valid quiz archive.';
  banner.style.cssText = [
    'display: block', 'margin: 0 0 8px 0', 'padding: 8px 12px', 'border: 2px solid #c00',
    'background: #fee', 'color: #900', 'font: bold 16px sans-serif', 'text-align: center',
  ].join(';');
  document.body.appendChild(watermark);
  document.body.insertBefore(banner, document.body.firstChild);
})();
