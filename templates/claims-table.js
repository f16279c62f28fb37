/* Filter and sort the all-claims table; the page works without it (every row is shown). */
(function () {
  "use strict";
  /* A link to a row inside a closed <details> (e.g. #claim-<id>) opens it first. */
  function reveal() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var target = id ? document.getElementById(id) : null;
    var box = target ? target.closest("details") : null;
    if (box && !box.open) {
      box.open = true;
      target.scrollIntoView();
    }
  }
  window.addEventListener("hashchange", reveal);
  reveal();
  var table = document.getElementById("claims-table");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var filter = document.getElementById("claims-filter");
  var pick = document.getElementById("claims-verdict");
  var count = document.getElementById("claims-count");
  function apply() {
    var query = filter.value.toLowerCase();
    var wanted = pick.value;
    var shown = 0;
    rows.forEach(function (row) {
      var ok = (!wanted || row.getAttribute("data-verdict") === wanted) &&
        (!query || row.textContent.toLowerCase().indexOf(query) >= 0);
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " claims shown";
  }
  function value(row, key) { return row.getAttribute("data-" + key) || ""; }
  function sortBy(button) {
    var key = button.getAttribute("data-key");
    var order = button.getAttribute("data-order") === "up" ? -1 : 1;
    button.setAttribute("data-order", order === 1 ? "up" : "down");
    rows.sort(function (x, y) {
      var a = value(x, key), b = value(y, key);
      var na = parseFloat(a), nb = parseFloat(b);
      if (!isNaN(na) && !isNaN(nb)) { return (na - nb) * order; }
      if (!a !== !b) { return a ? -1 : 1; }  /* empty values last, either way */
      return a.localeCompare(b) * order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  Array.prototype.forEach.call(table.tHead.querySelectorAll("button[data-key]"), function (button) {
    button.addEventListener("click", function () { sortBy(button); });
  });
  filter.addEventListener("input", apply);
  pick.addEventListener("change", apply);
  document.getElementById("claims-controls").hidden = false;
  apply();
}());
