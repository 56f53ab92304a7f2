//! Content codings: which one a client takes (`Accept-Encoding`), and a body
//! kept with its compressed forms, each made once and only when first wanted.
//!
//! The portal compresses only what it renders or ships itself, so no client
//! can hand it a bomb. Live-update frames stay plain: each is a few hundred
//! bytes, sent the moment it is made (a compressor would hold it back or gain
//! nothing).

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
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
}

impl Encoded {
    pub fn new(plain: Bytes) -> Self {
        Self {
            plain,
            br: OnceLock::new(),
            gzip: OnceLock::new(),
        }
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
        let slot = match coding {
            _ if self.plain.len() < MIN_COMPRESSED => None,
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

    #[test]
    fn short_bodies_stay_plain() {
        let encoded = Encoded::new(Bytes::from_static(b"tiny"));
        assert_eq!(encoded.get(Coding::Brotli).1, Coding::Identity);
        assert_eq!(encoded.len(), 4);
    }
}
