// A local stand-in for Raptor's script, used by the demo so nothing leaves the machine.
// It reads the queue cdp_bridge's head script filled, then takes new events as they come,
// and lists them in a small panel and in the console.
(function () {
  var raptor = window.raptor || { q: [] };
  var panel = document.createElement("aside");
  panel.className = "tracking-panel";
  panel.innerHTML = "<strong>Raptor (demo stub) received:</strong><ol></ol>";
  document.body.appendChild(panel);
  function record(entry) {
    var item = document.createElement("li");
    item.textContent = entry.event + " " + JSON.stringify(entry.params);
    panel.querySelector("ol").appendChild(item);
    console.log("raptor demo stub:", entry.event, entry.params);
  }
  raptor.q.forEach(record);
  raptor.push = function (event, params, options) { record({ event: event, params: params, options: options }); };
})();
