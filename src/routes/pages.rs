//! HTML pages people see: the thank-you page after a no-JavaScript post, the plain error page,
//! and the index. Rendered with minijinja, HTML auto-escaped: user data is always escaped.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use minijinja::{context, Environment};
use serde::Deserialize;

use crate::error::{ApiError, FieldErrors};
use crate::startup::AppState;

const LAYOUT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}Inlet{% endblock %}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;line-height:1.5;color:#1d2330}
label{display:block;margin:.6rem 0 .2rem}input,textarea,select{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1rem;padding:.6rem 1.2rem}.err{color:#a4001f}code{background:#f3f4f6;padding:.1rem .3rem}
section{border:1px solid #dde;border-radius:8px;padding:1rem 1.5rem;margin:1.5rem 0}
</style></head><body>{% block body %}{% endblock %}</body></html>"#;

const THANKS: &str = r#"{% extends "layout.html" %}{% block title %}Thank you{% endblock %}
{% block body %}<h1>Thank you</h1><p>{{ message }}</p>
{% if download_url %}<p><a href="{{ download_url }}">Download your copy</a></p>{% endif %}
{% if back %}<p><a href="{{ back }}">Back to the page</a></p>{% endif %}{% endblock %}"#;

const ERROR: &str = r#"{% extends "layout.html" %}{% block title %}Please check the form{% endblock %}
{% block body %}<h1>{{ title }}</h1><p>{{ message }}</p>
{% if fields %}<ul>{% for name, messages in fields|items %}{% for m in messages %}
<li class="err"><strong>{{ name }}</strong> {{ m }}</li>{% endfor %}{% endfor %}</ul>{% endif %}
{% if back %}<p><a href="{{ back }}">Go back and try again</a></p>
{% else %}<p>Use your browser's back button to correct the form.</p>{% endif %}{% endblock %}"#;

const INDEX: &str = r#"{% extends "layout.html" %}{% block title %}Inlet{% endblock %}
{% block body %}<h1>Inlet is running</h1>
<p>These forms post straight to Inlet, with no JavaScript. Each submission is stored as a lead.</p>
{% for form in forms %}<section><h2>{{ form.id }} <small>({{ form.kind }})</small></h2>
<form action="/v1/forms/{{ form.id }}/submissions" method="post">
{% for f in form.fields %}{% if f.kind == "checkbox" %}
<label><input type="checkbox" name="{{ f.name }}" style="width:auto"> {{ f.label }}</label>
{% elif f.kind == "textarea" %}<label for="{{ form.id }}-{{ f.name }}">{{ f.label }}</label>
<textarea id="{{ form.id }}-{{ f.name }}" name="{{ f.name }}"{% if f.required %} required{% endif %}></textarea>
{% elif f.kind == "select" %}<label for="{{ form.id }}-{{ f.name }}">{{ f.label }}</label>
<select id="{{ form.id }}-{{ f.name }}" name="{{ f.name }}">{% for o in f.options %}<option>{{ o }}</option>{% endfor %}</select>
{% else %}<label for="{{ form.id }}-{{ f.name }}">{{ f.label }}</label>
<input id="{{ form.id }}-{{ f.name }}" name="{{ f.name }}" type="{{ f.input_type }}"{% if f.required %} required{% endif %}>
{% endif %}{% endfor %}<button type="submit">Send</button></form></section>{% endfor %}
<p>API: <code>POST /v1/forms/&lt;id&gt;/submissions</code> with JSON or a form post.</p>
{% endblock %}"#;

/// The compiled page templates.
#[derive(Clone)]
pub struct Pages {
    env: Arc<Environment<'static>>,
}

impl Pages {
    pub fn new() -> Result<Pages, minijinja::Error> {
        let mut env = Environment::new();
        env.add_template("layout.html", LAYOUT)?;
        env.add_template("thanks.html", THANKS)?;
        env.add_template("error.html", ERROR)?;
        env.add_template("index.html", INDEX)?;
        Ok(Pages { env: Arc::new(env) })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> String {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, template = name, "page failed to render");
                "<!doctype html><title>Inlet</title><p>Something went wrong.</p>".into()
            })
    }

    /// An error as a page a person can read (for no-JavaScript form posts).
    pub fn error_page(&self, err: &ApiError, back: Option<&str>) -> HttpResponse {
        use actix_web::ResponseError;
        let status = err.status_code();
        let title = match status {
            StatusCode::UNPROCESSABLE_ENTITY => "Please check the form",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            StatusCode::SERVICE_UNAVAILABLE => "Please try again in a moment",
            _ => "This form could not be sent",
        };
        let fields: Option<&FieldErrors> = err.fields();
        let body = self.render(
            "error.html",
            context! { title, message => err.to_string(), fields, back },
        );
        let mut resp = HttpResponse::build(status);
        err.decorate(&mut resp);
        resp.content_type("text/html; charset=utf-8").body(body)
    }

    pub fn thanks_page(
        &self,
        message: &str,
        download_url: Option<&str>,
        back: Option<&str>,
    ) -> String {
        self.render("thanks.html", context! { message, download_url, back })
    }
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pages")
    }
}

#[derive(Deserialize)]
pub struct ThanksQuery {
    form: Option<String>,
}

/// The built-in thank-you page a no-JavaScript post lands on when its form has no redirect.
pub async fn thanks(state: web::Data<AppState>, q: web::Query<ThanksQuery>) -> HttpResponse {
    let form = q.form.as_deref().and_then(|id| state.forms.get(id));
    let message = form.map_or("Thank you! We received your submission.", |f| {
        f.success_message.as_str()
    });
    let download = form
        .and_then(|f| f.download_url.as_deref())
        .map(|u| state.absolute_url(u));
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(state.pages.thanks_page(message, download.as_deref(), None))
}

/// A plain page with every form as a no-JavaScript HTML form.
pub async fn index(state: web::Data<AppState>) -> HttpResponse {
    let forms: Vec<minijinja::Value> = state
        .forms
        .all()
        .iter()
        .map(|f| {
            let fields: Vec<minijinja::Value> = f
                .fields
                .iter()
                .map(|d| {
                    let kind = serde_json::to_value(d.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from));
                    let input_type = match kind.as_deref() {
                        Some("hidden") => "hidden",
                        Some("email") => "email",
                        Some("tel") => "tel",
                        Some("url") => "url",
                        _ => "text",
                    };
                    context! { name => d.name, label => d.label, required => d.required,
                    kind, input_type, options => d.options }
                })
                .collect();
            let kind = serde_json::to_value(f.kind).ok();
            context! { id => f.id, kind, fields }
        })
        .collect();
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(state.pages.render("index.html", context! { forms }))
}
