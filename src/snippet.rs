//! The embed script, its optional stylesheet and the demo landing page's files, compiled into
//! the binary so one file serves everything. Each asset is prepared once at startup: its gzip
//! form, a strong `ETag` and its Subresource Integrity hash.
//!
//! The script is `snippet/dist/inlet.min.js`, built from `snippet/inlet.js` by
//! `npm run build` in `snippet/` (the browser test suite fails when it is stale).

use std::io::Write;

use base64::Engine;
use sha2::{Digest, Sha256, Sha384};

/// The version in the long-cached URL `/inlet/{VERSION}/inlet.js`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The most the script may weigh, gzipped (the budget: 6 KB).
pub const SCRIPT_GZIP_BUDGET: usize = 6 * 1024;

const SCRIPT: &[u8] = include_bytes!("../snippet/dist/inlet.min.js");
/// The proof-of-work solver, loaded by the script only for forms that need it.
const POW_SOLVER: &[u8] = include_bytes!("../snippet/dist/inlet-pow.min.js");
const STYLE: &[u8] = include_bytes!("../snippet/inlet.css");
const DEMO_CSS: &[u8] = include_bytes!("../snippet/demo/demo.css");
const WHITEPAPER: &[u8] = include_bytes!("../snippet/demo/whitepaper.pdf");
/// The demo landing page (a minijinja template).
pub const DEMO_PAGE: &str = include_str!("../snippet/demo/index.html");

/// One file Inlet serves, ready to answer with.
#[derive(Debug)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// Present when gzip makes the file smaller.
    pub gzip: Option<Vec<u8>>,
    /// A strong validator, quoted.
    pub etag: String,
    /// `sha384-…`, for `integrity="…"` on pinned script and link tags.
    pub integrity: String,
    /// Sent as `Content-Disposition` (downloads).
    pub disposition: Option<&'static str>,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, body: &'static [u8]) -> Asset {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let gzip = enc
            .write_all(body)
            .and_then(|()| enc.finish())
            .ok()
            .filter(|z| z.len() < body.len());
        let digest = Sha256::digest(body);
        Asset {
            name,
            content_type,
            body,
            gzip,
            etag: format!("\"{}\"", hex::encode(&digest[..12])),
            integrity: format!(
                "sha384-{}",
                base64::engine::general_purpose::STANDARD.encode(Sha384::digest(body))
            ),
            disposition: None,
        }
    }

    /// The gzipped size (the body's own size when gzip does not help).
    pub fn gzip_len(&self) -> usize {
        self.gzip.as_ref().map_or(self.body.len(), Vec::len)
    }
}

/// Everything the snippet module serves.
#[derive(Debug)]
pub struct Assets {
    pub script: Asset,
    /// `inlet-pow.js`: the proof-of-work solver.
    pub pow_solver: Asset,
    pub style: Asset,
    /// Public files under `/assets/` (the demo page's stylesheet).
    pub files: Vec<Asset>,
    /// Built-in lead magnets (the demo whitepaper): only ever served through a signed
    /// download link, never at a public URL.
    pub downloads: Vec<Asset>,
}

impl Assets {
    pub fn load() -> Assets {
        let mut whitepaper = Asset::new("whitepaper.pdf", "application/pdf", WHITEPAPER);
        whitepaper.disposition = Some("attachment; filename=\"whitepaper.pdf\"");
        Assets {
            script: Asset::new("inlet.js", "text/javascript; charset=utf-8", SCRIPT),
            pow_solver: Asset::new("inlet-pow.js", "text/javascript; charset=utf-8", POW_SOLVER),
            style: Asset::new("inlet.css", "text/css; charset=utf-8", STYLE),
            files: vec![Asset::new("demo.css", "text/css; charset=utf-8", DEMO_CSS)],
            downloads: vec![whitepaper],
        }
    }

    pub fn file(&self, name: &str) -> Option<&Asset> {
        self.files.iter().find(|a| a.name == name)
    }

    pub fn download(&self, name: &str) -> Option<&Asset> {
        self.downloads.iter().find(|a| a.name == name)
    }

    /// The tags a marketer pastes, pinned to this version with SRI.
    pub fn embed_tags(&self, public_url: &str) -> String {
        let base = public_url.trim_end_matches('/');
        format!(
            "<script src=\"{base}/inlet/{VERSION}/inlet.js\" integrity=\"{}\" crossorigin=\"anonymous\" async></script>\n\
             <link rel=\"stylesheet\" href=\"{base}/inlet/{VERSION}/inlet.css\" integrity=\"{}\" crossorigin=\"anonymous\">",
            self.script.integrity, self.style.integrity
        )
    }

    /// What `GET /v1/snippet` and `inlet snippet --json` report.
    pub fn describe(&self, public_url: &str) -> serde_json::Value {
        let base = public_url.trim_end_matches('/');
        let one = |a: &Asset| {
            serde_json::json!({
                "url": format!("{base}/{}", a.name),
                "pinned_url": format!("{base}/inlet/{VERSION}/{}", a.name),
                "integrity": a.integrity,
                "bytes": a.body.len(),
                "gzip_bytes": a.gzip_len(),
            })
        };
        serde_json::json!({
            "version": VERSION,
            "script": one(&self.script),
            "stylesheet": one(&self.style),
            "embed": self.embed_tags(public_url),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_declares_the_crate_version() {
        let text = std::str::from_utf8(SCRIPT).unwrap();
        assert!(
            text.contains(&format!("\"{VERSION}\"")),
            "snippet/inlet.js must say VERSION = '{VERSION}' (then run npm run build)"
        );
    }

    #[test]
    fn assets_get_validators_and_integrity() {
        let a = Assets::load();
        assert!(a.script.etag.starts_with('"') && a.script.etag.len() == 26);
        assert!(a.script.integrity.starts_with("sha384-"));
        assert!(a.script.gzip_len() < a.script.body.len());
        assert!(a
            .download("whitepaper.pdf")
            .unwrap()
            .body
            .starts_with(b"%PDF-"));
        assert!(a.file("whitepaper.pdf").is_none(), "gated, not public");
        assert!(a.file("../Cargo.toml").is_none());
    }
}
