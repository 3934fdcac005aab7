// Stockroom pool web page: progressive enhancement only; every page reads
// fine without it. Adds copy buttons and counts lease time down.
(function () {
  'use strict';
  function copy(text, button) {
    var done = function () { button.textContent = 'Copied'; setTimeout(function () { button.textContent = 'Copy'; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else { fallback(text); done(); }
  }
  function fallback(text) {
    var t = document.createElement('textarea');
    t.value = text; t.setAttribute('readonly', ''); t.className = 'vh';
    document.body.appendChild(t); t.select();
    try { document.execCommand('copy'); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(t);
  }
  document.querySelectorAll('code.v[data-field]').forEach(function (code) {
    var b = document.createElement('button');
    b.type = 'button'; b.className = 'copy'; b.textContent = 'Copy';
    b.setAttribute('aria-label', 'Copy ' + code.getAttribute('data-field'));
    b.addEventListener('click', function () { copy(code.textContent, b); });
    code.insertAdjacentElement('afterend', b);
  });
  var timers = document.querySelectorAll('time[data-expires]');
  if (timers.length) {
    setInterval(function () {
      timers.forEach(function (t) {
        var s = Math.floor((Number(t.getAttribute('data-expires')) - Date.now()) / 1000);
        if (s <= 0) { t.textContent = 'expired'; return; }
        var pad = function (n) { return (n < 10 ? '0' : '') + n; };
        t.textContent = s >= 3600 ? Math.floor(s / 3600) + 'h ' + pad(Math.floor((s % 3600) / 60)) + 'm'
          : Math.floor(s / 60) + 'm ' + pad(s % 60) + 's';
      });
    }, 1000);
  }
})();
