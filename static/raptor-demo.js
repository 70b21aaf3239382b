// A local stand-in for Raptor's script, used by the demo so nothing leaves the machine.
// Like Raptor's script it gives the visitor an rsa cookie (a UUID) and sends the page's
// events, here to the demo's own stand-in (/demo-raptor/events), which puts a visitor
// who looks at a cat product in "Cat owners". It also lists the events it receives in a
// small panel and in the console. It runs only after consent (cdp_main_script loads it).
(function () {
  var raptor = window.raptor || { q: [] };
  var panel = document.createElement("aside");
  panel.className = "tracking-panel";
  panel.innerHTML = "<strong>Raptor (demo stub) received:</strong><ol></ol>";
  document.body.appendChild(panel);

  function uuid4() {
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 0x100).toString(16).slice(1); }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }
  function visitorId() {
    var found = document.cookie.match(/(?:^|;\s*)rsa=([0-9a-f-]{36})/);
    if (found) return found[1];
    var id = uuid4();  // Safari caps a cookie set by script at 7 days, as it does Raptor's
    document.cookie = "rsa=" + id + "; path=/; max-age=" + 7 * 24 * 3600 + "; samesite=lax";
    return id;
  }
  var coid = visitorId();

  function send(entries) {
    fetch("/demo-raptor/events", {
      method: "POST", keepalive: true, headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ coid: coid, events: entries })
    });
  }
  function record(entry) {
    var item = document.createElement("li");
    item.textContent = entry.event + " " + JSON.stringify(entry.params);
    panel.querySelector("ol").appendChild(item);
    console.log("raptor demo stub:", entry.event, entry.params);
  }
  var queued = raptor.q.map(function (e) { return { event: e.event, params: e.params }; });
  queued.forEach(record);
  send(queued);
  raptor.push = function (event, params, options) {
    record({ event: event, params: params, options: options });
    send([{ event: event, params: params }]);
  };
})();
