// The console's activity page, live: new events arrive over server-sent
// events and are put on top of the table. Optional: without it the page
// shows the newest events and a Refresh link. Text only (no HTML from the
// events is ever parsed).
(function () {
  'use strict';
  var rows = document.getElementById('activity-rows');
  var live = document.getElementById('live');
  if (!rows || !live || !window.EventSource) { return; }
  var seen = 0;
  var source = new EventSource(live.getAttribute('data-stream'));
  source.onmessage = function (message) {
    var e;
    try { e = JSON.parse(message.data); } catch (_) { return; }
    var about = [e.customer, e.product, e.version, e.filename].filter(Boolean).join(' ');
    if (e.actor) { about += ' · by ' + e.actor; }
    var cells = [e.at, e.type, about, JSON.stringify(e.data || {})];
    var row = document.createElement('tr');
    cells.forEach(function (text, i) {
      var cell = document.createElement(i === 1 ? 'th' : 'td');
      if (i === 1) { cell.scope = 'row'; }
      if (i === 3) {
        var code = document.createElement('code');
        code.className = 'digest';
        code.textContent = text;
        cell.appendChild(code);
      } else {
        cell.textContent = text;
      }
      row.appendChild(cell);
    });
    rows.insertBefore(row, rows.firstChild);
    seen += 1;
    live.textContent = 'Live: ' + seen + (seen === 1 ? ' new event' : ' new events') + ' since the page opened.';
  };
})();
