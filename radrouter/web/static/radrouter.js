"use strict";
// The one way a page changes state: a JSON POST carrying the CSRF token the layout put in <meta>.
function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrfToken()},
    body: JSON.stringify(body === undefined ? {} : body),
  });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new Error(`${response.status} ${detail}`);
  }
  return response.json();
}

// Buttons with data-post="<url>" POST it and reload the page (the dashboard's retries).
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-post]");
  if (!button) return;
  button.disabled = true;
  try {
    await postJson(button.dataset.post);
    window.location.reload();
  } catch (error) {
    button.disabled = false;
    button.title = String(error);
    button.textContent = "retry failed";
  }
});
