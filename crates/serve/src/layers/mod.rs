//! Cross-cutting concerns as middleware: request id, logs and metrics ([`observe`], on every
//! matched route), a route shape's guard ([`guard`]: path rule, methods, the concurrency cap
//! of [`limit`], preflight answers), leases for private images ([`access`]), the route's CORS
//! headers on every response ([`cors`]), and JSON errors ([`errors`]).

pub mod access;
pub mod cors;
pub mod errors;
pub mod guard;
pub mod limit;
pub mod observe;
