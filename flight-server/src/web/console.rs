//! The web console (helper C fills this module): static assets under `flight-server/console/`
//! compiled into the binary. Interface expected by `web::router`: `pub fn router() -> Router`
//! (`Router<()>`, no fallback; serves `/` and its assets without authentication).

use axum::Router;

pub fn router() -> Router {
    Router::new()
}
