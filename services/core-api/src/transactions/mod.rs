//! The `/transactions` route group: create, fetch one, list.

mod create;
mod fetch;
mod list;
pub mod model;
pub mod request;
pub mod store;

pub use create::{__path_create_transaction, accept};
pub use fetch::__path_get_transaction;
pub use list::{__path_list_transactions, TransactionList};

use axum::Router;
use axum::routing::get;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/transactions",
            get(list::list_transactions).post(create::create_transaction),
        )
        .route("/transactions/{id}", get(fetch::get_transaction))
}
