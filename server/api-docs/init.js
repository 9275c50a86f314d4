// B3O Edge: starts Swagger UI on this server's OpenAPI document. A file rather than an inline
// script: the server's Content-Security-Policy allows scripts from its own origin only.
"use strict";

// "Try it out" with the browser's session: unsafe methods need the session's CSRF token
// (from GET /api/me) in X-CSRF-Token, unless the request carries an API token instead.
var csrfToken = null;

function withCsrfToken(request) {
  var method = (request.method || "GET").toUpperCase();
  var headers = request.headers || {};
  var unsafe = ["POST", "PUT", "PATCH", "DELETE"].indexOf(method) >= 0;
  if (!unsafe || headers.Authorization || headers.authorization) {
    return request;
  }
  var ready = csrfToken
    ? Promise.resolve(csrfToken)
    : fetch("/api/me", { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : {}; })
        .then(function (me) { csrfToken = me.csrf_token || null; return csrfToken; })
        .catch(function () { return null; });
  return ready.then(function (token) {
    if (token) {
      request.headers = headers;
      request.headers["X-CSRF-Token"] = token;
    }
    return request;
  });
}

window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No call to the public validator: nothing leaves this server.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    requestInterceptor: withCsrfToken,
  });
});
