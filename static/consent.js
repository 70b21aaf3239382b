// The demo's consent banner: remember the choice, then let cdp_bridge load Raptor's script.
(function () {
  var button = document.getElementById("accept-tracking");
  if (!button) return;
  button.addEventListener("click", function () {
    document.cookie = button.dataset.cookie + "=yes; path=/; max-age=31536000; SameSite=Lax";
    document.getElementById("consent-banner").hidden = true;
    document.dispatchEvent(new CustomEvent("enableTracking"));
  });
})();
