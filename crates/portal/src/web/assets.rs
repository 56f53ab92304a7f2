//! CSS, JS and the icon, compiled into the binary, compressed once at start
//! and served under content-hashed names (`app.<hash>.css`) that browsers may
//! keep for a year: a new release changes the name, never the bytes behind
//! one. The plain names still answer, with a short cache, for pages of an
//! older release that are still open.

use super::PageError;
use super::encoding::{Coding, Conditions, Encoded};
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// A hashed name never changes its bytes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// A plain name changes with a release.
const SHORT: &str = "public, max-age=300";

struct Asset {
    /// The plain name, e.g. `app.css`.
    name: &'static str,
    /// The name with the content's hash, e.g. `app.1a2b3c4d5e.css`.
    hashed: String,
    /// `/assets/` and the hashed name.
    href: String,
    content_type: &'static str,
    body: Encoded,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Self {
        let digest = Sha256::digest(bytes);
        let hash: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
        let hashed = match name.rsplit_once('.') {
            Some((stem, extension)) => format!("{stem}.{hash}.{extension}"),
            None => format!("{name}.{hash}"),
        };
        Self {
            name,
            href: format!("/assets/{hashed}"),
            hashed,
            content_type,
            body: Encoded::eager(axum::body::Bytes::from_static(bytes)),
        }
    }
}

fn assets() -> &'static [Asset; 3] {
    static ASSETS: OnceLock<[Asset; 3]> = OnceLock::new();
    ASSETS.get_or_init(|| {
        [
            Asset::new(
                "app.css",
                "text/css; charset=utf-8",
                include_bytes!("../../assets/app.css"),
            ),
            Asset::new(
                "app.js",
                "text/javascript; charset=utf-8",
                include_bytes!("../../assets/app.js"),
            ),
            Asset::new(
                "favicon.svg",
                "image/svg+xml",
                include_bytes!("../../assets/favicon.svg"),
            ),
        ]
    })
}

/// Makes every asset's hash and compressed forms now (at start, not on a
/// visitor's first request).
pub fn prepare() {
    let _ = assets();
}

/// The URL of `name` (e.g. `app.css`) under its hashed name, for templates.
pub fn href(name: &str) -> &'static str {
    assets()
        .iter()
        .find(|asset| asset.name == name)
        .map_or("", |asset| asset.href.as_str())
}

/// `GET /assets/{file}`: an asset by its hashed name (kept a year) or its
/// plain name (kept five minutes), in the coding the client takes best.
pub async fn serve(
    Path(file): Path<String>,
    coding: Coding,
    conditions: Conditions,
) -> Result<Response, PageError> {
    let (asset, cache) = assets()
        .iter()
        .find_map(|asset| {
            if asset.hashed == file {
                Some((asset, IMMUTABLE))
            } else if asset.name == file {
                Some((asset, SHORT))
            } else {
                None
            }
        })
        .ok_or(PageError::NotFound)?;
    let (response, _) = asset.body.respond(
        coding,
        &conditions,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_follow_the_content() {
        let css = href("app.css");
        assert!(
            css.starts_with("/assets/app.") && css.ends_with(".css"),
            "{css}"
        );
        assert_eq!(css.len(), "/assets/app.0123456789.css".len());
        assert_ne!(href("app.js"), "");
        assert_eq!(href("nothing.txt"), "");
    }
}
