//! The embed script (`/inlet.js`), its stylesheet (`/inlet.css`), their pinned copies
//! (`/inlet/{version}/…`, cached for a year), the demo files (`/assets/{name}`) and
//! `GET /v1/snippet`, which reports the pinned URLs with their SRI hashes.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;
use crate::snippet::{Asset, VERSION};
use crate::startup::AppState;

/// How long a browser or CDN may keep an asset.
#[derive(Debug, Clone, Copy)]
enum Caching {
    /// `/inlet.js`: short, so a new release reaches pages within minutes; revalidated by ETag.
    Latest,
    /// `/inlet/{version}/…`: never changes.
    Pinned,
    /// Demo files.
    Hour,
}

fn serve(req: &HttpRequest, asset: &Asset, caching: Caching) -> HttpResponse {
    let cache = match caching {
        Caching::Latest => "public, max-age=300, stale-while-revalidate=86400",
        Caching::Pinned => "public, max-age=31536000, immutable",
        Caching::Hour => "public, max-age=3600",
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t == asset.etag)
        });
    let mut resp = HttpResponse::build(if fresh {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    });
    resp.insert_header((header::ETAG, asset.etag.as_str()))
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Any page may load these, also with `integrity` + `crossorigin` (which needs CORS).
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header(("Cross-Origin-Resource-Policy", "cross-origin"));
    if fresh {
        return resp.finish();
    }
    resp.insert_header((header::CONTENT_TYPE, asset.content_type));
    if let Some(d) = asset.disposition {
        resp.insert_header((header::CONTENT_DISPOSITION, d));
    }
    let gzip_ok = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    match (&asset.gzip, gzip_ok) {
        (Some(z), true) => {
            resp.insert_header((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
            resp.body(z.clone())
        }
        _ => resp.body(asset.body),
    }
}

/// True when `Accept-Encoding` allows gzip (a `q=0` refuses it).
fn accepts_gzip(v: &str) -> bool {
    v.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

pub async fn script(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve(&req, &state.assets.script, Caching::Latest)
}

pub async fn pow_solver(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve(&req, &state.assets.pow_solver, Caching::Latest)
}

pub async fn style(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    serve(&req, &state.assets.style, Caching::Latest)
}

/// `/inlet/{version}/{file}`: only this build's version exists; any other is a 404, because
/// its bytes (and so its SRI hash) cannot be served.
pub async fn pinned(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (version, file) = path.into_inner();
    let asset = match (version == VERSION, file.as_str()) {
        (true, "inlet.js") => &state.assets.script,
        (true, "inlet.css") => &state.assets.style,
        (true, "inlet-pow.js") => &state.assets.pow_solver,
        _ => return Err(ApiError::NotFound),
    };
    Ok(serve(&req, asset, Caching::Pinned))
}

pub async fn file(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let asset = state.assets.file(&name).ok_or(ApiError::NotFound)?;
    Ok(serve(&req, asset, Caching::Hour))
}

/// `GET /v1/snippet`: the version, the pinned URLs with their SRI hashes, sizes, and the tags
/// to paste.
#[utoipa::path(
    get,
    path = "/v1/snippet",
    tag = "capture",
    responses((status = 200, description = "The embed tags pinned to this version, with their integrity", body = super::openapi::Snippet))
)]
pub async fn describe(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.assets.describe(&state.public_url))
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip, deflate, br"));
        assert!(accepts_gzip("br;q=1.0, GZIP;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("br, deflate"));
        assert!(!accepts_gzip("identity"));
    }
}
