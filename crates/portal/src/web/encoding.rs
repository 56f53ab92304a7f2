//! Content codings: which one a client takes (`Accept-Encoding`), and a body
//! kept with its compressed forms, each made once and only when first wanted,
//! and with a strong entity tag per form, so a client holding the bytes gets a
//! `304` instead of them again (`If-None-Match`).
//!
//! The portal compresses only what it renders or ships itself, so no client
//! can hand it a bomb. Live-update frames stay plain: each is a few hundred
//! bytes, sent the moment it is made (a compressor would hold it back or gain
//! nothing).

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::OnceLock;

/// Bodies shorter than this are sent as they are: the coding's own framing
/// and the work outweigh what it saves.
pub const MIN_COMPRESSED: usize = 1024;

/// A content coding the portal answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Brotli,
    Gzip,
    Identity,
}

impl Coding {
    /// The best coding `headers` accept: `br` over `gzip` over none, each
    /// unless refused with `q=0` (a `*` stands for any coding not named).
    pub fn preferred(headers: &HeaderMap) -> Self {
        let (mut br, mut gzip, mut any) = (None, None, None);
        for coding in headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
        {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let accepted = !parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            if name.eq_ignore_ascii_case("br") {
                br = Some(accepted);
            } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(accepted);
            } else if name == "*" {
                any = Some(accepted);
            }
        }
        if br.or(any) == Some(true) {
            Self::Brotli
        } else if gzip.or(any) == Some(true) {
            Self::Gzip
        } else {
            Self::Identity
        }
    }

    /// What this coding adds to a body's entity tag: forms of one body are
    /// different bytes, so a strong tag must tell them apart.
    fn tag_suffix(self) -> &'static str {
        match self {
            Self::Brotli => ".br",
            Self::Gzip => ".gz",
            Self::Identity => "",
        }
    }

    /// The `Content-Encoding` value, none for identity.
    pub fn header(self) -> Option<HeaderValue> {
        match self {
            Self::Brotli => Some(HeaderValue::from_static("br")),
            Self::Gzip => Some(HeaderValue::from_static("gzip")),
            Self::Identity => None,
        }
    }

    /// `body` in this coding.
    pub fn encode(self, body: &[u8]) -> Bytes {
        match self {
            Self::Brotli => {
                let mut out = Vec::with_capacity(body.len() / 4);
                let params = brotli::enc::BrotliEncoderParams {
                    quality: BROTLI_QUALITY,
                    lgwin: 20,
                    ..Default::default()
                };
                // Reading from a slice and writing into a Vec cannot fail.
                let _ = brotli::BrotliCompress(&mut &body[..], &mut out, &params);
                Bytes::from(out)
            }
            Self::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4),
                    flate2::Compression::new(6),
                );
                let _ = encoder.write_all(body);
                Bytes::from(encoder.finish().unwrap_or_default())
            }
            Self::Identity => Bytes::copy_from_slice(body),
        }
    }
}

/// Brotli's quality for bodies made at run time: 5 compresses a page about as
/// well as gzip's best in a fraction of quality 11's time.
const BROTLI_QUALITY: i32 = 5;

/// A body and its compressed forms, each made on first use and then kept.
#[derive(Debug)]
pub struct Encoded {
    plain: Bytes,
    br: OnceLock<Bytes>,
    gzip: OnceLock<Bytes>,
    /// The entity tags of the plain, brotli and gzip forms: the plain body's
    /// digest (16 hex digits of its SHA-256; equal bodies, from any process
    /// or release, have equal tags) and the coding. Made once, not per answer.
    tags: [HeaderValue; 3],
}

impl Encoded {
    pub fn new(plain: Bytes) -> Self {
        let digest: String = Sha256::digest(&plain)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let tag = |coding: Coding| {
            // Hex digits, a dot and letters: always a valid header value.
            HeaderValue::from_str(&format!("\"{digest}{}\"", coding.tag_suffix()))
                .unwrap_or(HeaderValue::from_static("\"\""))
        };
        Self {
            tags: [
                tag(Coding::Identity),
                tag(Coding::Brotli),
                tag(Coding::Gzip),
            ],
            plain,
            br: OnceLock::new(),
            gzip: OnceLock::new(),
        }
    }

    /// The coding a client that takes `wanted` is answered in: identity for
    /// a body too short to gain.
    pub fn coding_for(&self, wanted: Coding) -> Coding {
        if self.plain.len() < MIN_COMPRESSED {
            Coding::Identity
        } else {
            wanted
        }
    }

    /// The strong entity tag of the body in `coding` (as [`Self::coding_for`]
    /// settled it), e.g. `"1a2b3c4d5e6f7a8b.br"`.
    pub fn etag(&self, coding: Coding) -> HeaderValue {
        let [identity, br, gzip] = &self.tags;
        match coding {
            Coding::Identity => identity.clone(),
            Coding::Brotli => br.clone(),
            Coding::Gzip => gzip.clone(),
        }
    }

    /// The answer to a GET for this body from a client that takes `wanted`:
    /// `304` with no body when `If-None-Match` names the form it would get
    /// (the form is then not made), else `200` with it. `headers` are the
    /// answer's own (content type, cache policy); `Vary` and `ETag` are added.
    /// Also returns the bytes of a compressed form this call made.
    pub fn respond(
        &self,
        wanted: Coding,
        request: &Conditions,
        headers: impl IntoIterator<Item = (header::HeaderName, HeaderValue)>,
    ) -> (Response, usize) {
        let coding = self.coding_for(wanted);
        let etag = self.etag(coding);
        let unchanged = if_none_match(request, &etag);
        let (body, made) = if unchanged {
            (Bytes::new(), 0)
        } else {
            let (body, _, made) = self.get(coding);
            let made = if made { body.len() } else { 0 };
            (body, made)
        };
        let mut response = Response::new(axum::body::Body::from(body));
        // Room for what `ops::http::observe` adds on the way out.
        let out = response.headers_mut();
        *out = HeaderMap::with_capacity(6 + ops::http::ROOM);
        for (name, value) in headers {
            out.insert(name, value);
        }
        out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        out.insert(header::ETAG, etag);
        if unchanged {
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            // A 304 describes the stored response; it has no content of its own.
            response.headers_mut().remove(header::CONTENT_TYPE);
        } else if let Some(encoding) = coding.header() {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, encoding);
        }
        (response, made)
    }

    /// A body with both compressed forms made now (for what is served from
    /// the binary: made once at start).
    pub fn eager(plain: Bytes) -> Self {
        let encoded = Self::new(plain);
        let _ = encoded.get(Coding::Brotli);
        let _ = encoded.get(Coding::Gzip);
        encoded
    }

    /// The body in `coding` (identity when the body is too short to gain),
    /// with the coding it is actually in, and whether this call made it.
    pub fn get(&self, coding: Coding) -> (Bytes, Coding, bool) {
        let slot = match self.coding_for(coding) {
            Coding::Brotli => Some(&self.br),
            Coding::Gzip => Some(&self.gzip),
            Coding::Identity => None,
        };
        let Some(slot) = slot else {
            return (self.plain.clone(), Coding::Identity, false);
        };
        let mut made = false;
        let body = slot.get_or_init(|| {
            made = true;
            coding.encode(&self.plain)
        });
        (body.clone(), coding, made)
    }

    /// Bytes held: the body and the forms made so far.
    pub fn len(&self) -> usize {
        self.plain.len()
            + self.br.get().map_or(0, Bytes::len)
            + self.gzip.get().map_or(0, Bytes::len)
    }

    /// The plain body.
    pub fn plain(&self) -> &Bytes {
        &self.plain
    }
}

/// A request's `If-None-Match` lines, taken alone (the `HeaderMap` extractor
/// would copy every header of every request).
#[derive(Debug, Default)]
pub struct Conditions(Vec<HeaderValue>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Conditions {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .headers
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .cloned()
                .collect(),
        ))
    }
}

/// Whether `If-None-Match` in `request` names `etag` (weak comparison, as the
/// header is defined with; `*` names any).
fn if_none_match(request: &Conditions, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    request
        .0
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|tag| tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == ours)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn accept(value: &str) -> Coding {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).expect("header"),
        );
        Coding::preferred(&headers)
    }

    #[test]
    fn picks_br_then_gzip_unless_refused() {
        assert_eq!(Coding::preferred(&HeaderMap::new()), Coding::Identity);
        assert_eq!(accept("gzip, deflate, br, zstd"), Coding::Brotli);
        assert_eq!(accept("gzip"), Coding::Gzip);
        assert_eq!(accept("br;q=0, gzip;q=0.5"), Coding::Gzip);
        assert_eq!(accept("br;q=0, gzip;q=0"), Coding::Identity);
        assert_eq!(accept("*"), Coding::Brotli);
        assert_eq!(accept("*;q=0"), Coding::Identity);
        assert_eq!(accept("identity"), Coding::Identity);
        assert_eq!(accept("GZIP ; q=1"), Coding::Gzip);
    }

    #[test]
    fn every_form_decodes_to_the_body_and_is_made_once() {
        let page: String = (0..400).map(|i| format!("<tr><td>{i}</td></tr>")).collect();
        let encoded = Encoded::new(Bytes::from(page.clone()));
        let (br, coding, made) = encoded.get(Coding::Brotli);
        assert_eq!((coding, made), (Coding::Brotli, true));
        let mut back = String::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_string(&mut back)
            .expect("brotli decodes");
        assert_eq!(back, page);
        assert!(!encoded.get(Coding::Brotli).2, "kept, not made again");
        let (gz, coding, _) = encoded.get(Coding::Gzip);
        assert_eq!(coding, Coding::Gzip);
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut back)
            .expect("gzip decodes");
        assert_eq!(back, page);
        assert_eq!(encoded.len(), page.len() + br.len() + gz.len());
        assert!(br.len() * 4 < page.len() && gz.len() * 4 < page.len());
    }

    fn conditional(value: &str) -> Conditions {
        Conditions(vec![HeaderValue::from_str(value).expect("header")])
    }

    #[test]
    fn a_client_holding_the_form_gets_304_and_no_form_is_made() {
        let page: String = (0..400).map(|i| format!("<tr><td>{i}</td></tr>")).collect();
        let encoded = Encoded::new(Bytes::from(page.clone()));
        let plain_tag = encoded.etag(Coding::Identity);
        let br_tag = encoded.etag(Coding::Brotli);
        assert_ne!(plain_tag, br_tag, "each form has a tag of its own");
        assert_eq!(
            plain_tag,
            Encoded::new(Bytes::from(page)).etag(Coding::Identity)
        );
        let tag = br_tag.to_str().expect("ascii").to_owned();
        for header in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"x\", {tag}"),
            "*".into(),
        ] {
            let (response, made) = encoded.respond(Coding::Brotli, &conditional(&header), []);
            assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{header}");
            assert_eq!(response.headers()[header::ETAG], br_tag);
            assert_eq!(made, 0);
        }
        assert!(encoded.br.get().is_none(), "a 304 made no brotli form");
        // The plain form's tag does not stand for the brotli bytes.
        let plain = plain_tag.to_str().expect("ascii");
        let (response, made) = encoded.respond(Coding::Brotli, &conditional(plain), []);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "br");
        assert!(made > 0);
        let (response, made) = encoded.respond(Coding::Identity, &conditional(plain), []);
        assert_eq!((response.status(), made), (StatusCode::NOT_MODIFIED, 0));
    }

    #[test]
    fn short_bodies_stay_plain() {
        let encoded = Encoded::new(Bytes::from_static(b"tiny"));
        assert_eq!(encoded.get(Coding::Brotli).1, Coding::Identity);
        assert_eq!(encoded.len(), 4);
    }
}
