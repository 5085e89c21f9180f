//! Latchkey's importers: a pasted cURL command, an OpenAPI (or Swagger) document or a Postman
//! collection becomes a connector with named calls. Each importer is a pure function from text
//! to [`model::Connector`].

pub mod curl;
pub mod model;
pub mod openapi;
pub mod postman;
