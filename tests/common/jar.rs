//! Just enough browser for pages without script: a cookie jar over one
//! listener, forms posted URL-encoded, no redirect followed.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{Admin, Reply, request_with_body};

pub struct Browser {
    addr: SocketAddr,
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    /// On the gateway's public listener (the portal).
    pub fn public(a: &Admin) -> Self {
        Browser { addr: a.gw.public, cookies: BTreeMap::new() }
    }

    /// On its admin listener (the console).
    pub fn admin(a: &Admin) -> Self {
        Browser { addr: a.gw.admin, cookies: BTreeMap::new() }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep(&mut self, r: &Reply) {
        for v in r.headers.get_all("set-cookie") {
            let text = v.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// A request with the jar's cookies and `body` as a form's; the
    /// cookies it sets are kept.
    pub async fn send(&mut self, method: &str, target: &str, body: &str) -> Reply {
        let cookie = self.cookie_header();
        let headers = [("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
        let r = request_with_body(self.addr, method, target, &headers, body.to_owned().into()).await;
        self.keep(&r);
        r
    }

    pub async fn get(&mut self, target: &str) -> Reply {
        self.send("GET", target, "").await
    }

    /// A form's fields, URL-encoded.
    pub async fn post(&mut self, target: &str, form: &[(&str, &str)]) -> Reply {
        let body = form
            .iter()
            .map(|(k, v)| {
                format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC))
            })
            .collect::<Vec<_>>()
            .join("&");
        self.send("POST", target, &body).await
    }
}

/// A page's text.
pub fn html(r: &Reply) -> String {
    String::from_utf8_lossy(r.bytes()).into_owned()
}

/// The value of the hidden input `name` in a page (the first one).
pub fn field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no field {name} in {page}")) + marker.len();
    page[start..start + page[start..].find('"').unwrap()].to_owned()
}

/// The error code an error page shows.
pub fn code(r: &Reply) -> String {
    let page = html(r);
    let start = page.find("<code>").unwrap_or_else(|| panic!("no code in {page}")) + 6;
    page[start..start + page[start..].find('<').unwrap()].to_owned()
}
