// The interactive docs of this server: Swagger UI over its own /openapi.json.
// Paths are relative to /docs, so a server behind a path prefix works too;
// validatorUrl null keeps Swagger UI from sending the document to swagger.io.
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
