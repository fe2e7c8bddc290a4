//! Write RawaLite renderers.
//!
//! A renderer is a WebAssembly component that turns a [`Request`] into a
//! [`Response`]. It can touch nothing but what the host grants it in
//! `rawalite.toml`: tables through [`db`], named file roots through
//! [`paths`], and the signed-in user through [`session`].
//!
//! # A complete renderer
//!
//! `rawalite new hello` creates the project: a `cdylib` crate that depends
//! on this SDK (copied into its `rawalite-sdk/`), a manifest and a README.
//! Its `src/lib.rs`, at its smallest:
//!
//! ```
//! use rawalite_guest::{Error, Renderer, Request, Response, escape};
//!
//! struct Hello;
//!
//! impl Renderer for Hello {
//!     fn render(req: Request) -> Result<Response, Error> {
//!         let name = req.query("name").unwrap_or("world");
//!         Ok(Response::html(format!("<h1>Hello, {}!</h1>", escape(name))))
//!     }
//! }
//!
//! rawalite_guest::export!(Hello);
//! ```
//!
//! Build it with `rawalite build` (cargo, for `wasm32-wasip2`) and run it
//! with `rawalite render --guest hello '/?name=you'`, or keep
//! `rawalite serve --watch` running and refresh the browser after each build.
//! The WIT reference, with what the host enforces for every call, is
//! `docs/WIT.md` in the RawaLite repository; the same text is on each
//! binding here.
//!
//! # Pages
//!
//! For pages of any size, add `maud = "0.27"` to the guest's dependencies:
//! its `html!` escapes every interpolated value, so a page cannot be broken
//! by what a user typed, and [`Response::page`] sends the result:
//!
//! ```
//! use maud::html;
//! use rawalite_guest::Response;
//!
//! let name = "<script>";
//! let page = html! { h1 { "Hello, " (name) } };
//! assert_eq!(page.clone().into_string(), "<h1>Hello, &lt;script&gt;</h1>");
//! let response = Response::page(page);
//! # assert_eq!(response.status, 200);
//! ```
//!
//! # Errors
//!
//! Every capability call returns `Result<_, Error>`; return the error from
//! `render` with `?` and the host answers with the right status (and
//! `rawalite render` exits 3 with `error: <code>: <message>`). Build your own
//! with [`Error::new`] or the shortcuts such as [`Error::not_found`].

#![warn(missing_docs)]

pub mod db;
mod html;
mod request;
mod response;
mod values;

pub use html::{Escaped, escape};
/// Whether a redirect target (a `next` parameter, say) stays on this site,
/// read the way a browser reads it; the same check the host makes on every
/// `Location` a guest sends. See [`rawalite_location::same_site`].
pub use rawalite_location::same_site;
pub use request::Form;
pub use values::Record;

/// The generated bindings of the `rawalite:bridge/renderer` world.
///
/// Most renderers need only the re-exports at the crate root.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "renderer",
        pub_export_macro: true,
        export_macro_name: "__export_renderer",
        default_bindings_module: "rawalite_guest::bindings",
    });
}

pub use bindings::Guest as Renderer;
pub use bindings::rawalite::bridge::types::{Error, ErrorCode, Request, Response};
pub use bindings::rawalite::bridge::{paths, session};

/// Declares the type that renders this component's pages.
///
/// ```
/// # use rawalite_guest::{Error, Renderer, Request, Response};
/// struct Page;
/// impl Renderer for Page {
///     fn render(_req: Request) -> Result<Response, Error> {
///         Ok(Response::text("ok"))
///     }
/// }
/// rawalite_guest::export!(Page);
/// ```
///
/// The component export exists only when building for WebAssembly; a
/// native build (unit tests, or a host linking the crate to reuse its page
/// functions) only checks that the type implements [`Renderer`].
#[macro_export]
macro_rules! export {
    ($renderer:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_renderer!($renderer with_types_in $crate::bindings);
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn($crate::Request) -> Result<$crate::Response, $crate::Error> =
            <$renderer as $crate::Renderer>::render;
    };
}

impl Error {
    /// An error with this code and a message that is safe to show a user.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    /// The request was malformed: a missing or bad parameter, an invalid form.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    /// The thing asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// The user may not do this.
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Denied, message)
    }

    /// The renderer itself failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl ErrorCode {
    /// The name used in the WIT world and on the command line (`not-found`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid-input",
            ErrorCode::Denied => "denied",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}
