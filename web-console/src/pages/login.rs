//! Sign-in with an API token, and sign-out.

use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use tideway_api_types::WhoAmI;

use crate::api::Api;
use crate::session::{
    cookie, csrf_ok, forbidden_csrf, is_tls, random_token, read_cookie, with_cookie, User,
    LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use crate::State;

fn login_page(csrf: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { "Sign in · Tideway" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body.center {
                main.card.narrow.login {
                    div.brand.big { span.logo aria-hidden="true" { "≈" } span { "Tideway" } }
                    h1 { "Sign in to the console" }
                    p.muted { "Use an API token. The first start prints the admin token and saves it to " code { ".tideway/admin-token" } "." }
                    @if let Some(e) = error {
                        div.notice.bad role="alert" { (e) }
                    }
                    form method="post" action="/login" {
                        input type="hidden" name="csrf" value=(csrf);
                        label for="token" { "API token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        button.primary type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
}

fn with_login_csrf(
    headers: &HeaderMap,
    uri: &Uri,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let csrf = random_token();
    let secure = is_tls(headers, uri.scheme_str());
    let res = (status, Html(login_page(&csrf, error).into_string())).into_response();
    with_cookie(res, &cookie(LOGIN_CSRF_COOKIE, &csrf, secure, Some(3600)))
}

pub async fn form(headers: HeaderMap, uri: Uri) -> Response {
    with_login_csrf(&headers, &uri, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: Option<String>,
}

pub async fn submit(
    AxumState(state): AxumState<State>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = read_cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if !csrf_ok(expected, form.csrf.as_deref()) {
        return forbidden_csrf();
    }
    let token = form.token.trim().to_string();
    if token.is_empty() {
        return with_login_csrf(
            &headers,
            &uri,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("Enter a token."),
        );
    }
    let api = Api::new(state.http.clone(), &state.config.api_base, &token);
    match api.get::<WhoAmI>("/whoami").await {
        Ok(me) => {
            let id = state
                .sessions
                .create(token, me.name, me.role, me.namespaces);
            let secure = is_tls(&headers, uri.scheme_str());
            let res = with_cookie(
                Redirect::to("/").into_response(),
                &cookie(SESSION_COOKIE, &id, secure, None),
            );
            with_cookie(res, &cookie(LOGIN_CSRF_COOKIE, "", secure, Some(0)))
        }
        Err(e) if e.status == 401 => with_login_csrf(
            &headers,
            &uri,
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid (unknown or revoked)."),
        ),
        Err(e) => with_login_csrf(&headers, &uri, StatusCode::BAD_GATEWAY, Some(&e.message)),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

pub async fn logout(
    AxumState(state): AxumState<State>,
    user: User,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(r) = user.check_csrf(form.csrf.as_deref()) {
        return r.into_response();
    }
    state.sessions.remove(&user.session.id);
    let secure = is_tls(&headers, uri.scheme_str());
    with_cookie(
        Redirect::to("/login").into_response(),
        &cookie(SESSION_COOKIE, "", secure, Some(0)),
    )
}
