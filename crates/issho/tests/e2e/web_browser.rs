//! A browser for the web application's tests over HTTP: cookies kept, redirects followed by
//! hand with every URL recorded, forms posted (and files uploaded) as a browser does, the
//! hidden fields and the CSRF token of a page read back.

use reqwest::blocking::Client;
use std::collections::HashMap;

/// A browser: cookies kept, redirects followed by hand (every hop's URL recorded).
pub(crate) struct Browser {
    pub(crate) http: Client,
    pub(crate) root: String,
    pub(crate) cookies: HashMap<String, String>,
    /// Every URL requested and every Location answered.
    pub(crate) urls: Vec<String>,
}

/// A page: final status, URL and body.
pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) url: String,
    pub(crate) body: String,
    pub(crate) headers: reqwest::header::HeaderMap,
}

impl Browser {
    pub(crate) fn new(root: &str) -> Browser {
        Browser {
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            root: root.to_string(),
            cookies: HashMap::new(),
            urls: Vec::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.root)
        }
    }

    pub(crate) fn send(
        &mut self,
        method: &str,
        path: &str,
        form: Option<&[(&str, &str)]>,
        origin: Option<&str>,
    ) -> Page {
        let mut url = self.url(path);
        let mut method = method.to_string();
        let mut body = form.map(|f| {
            f.iter()
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect::<Vec<_>>()
                .join("&")
        });
        for _ in 0..10 {
            self.urls.push(url.clone());
            let cookie: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let mut r = self
                .http
                .request(method.parse().unwrap(), &url)
                .header("cookie", cookie.join("; "));
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            if let Some(b) = &body {
                r = r
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(b.clone());
            }
            let resp = r.send().unwrap();
            for sc in resp.headers().get_all("set-cookie") {
                let sc = sc.to_str().unwrap();
                let (kv, _) = sc.split_once(';').unwrap_or((sc, ""));
                let (k, v) = kv.split_once('=').unwrap();
                if v.is_empty() || sc.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
            let status = resp.status().as_u16();
            if (300..400).contains(&status) {
                let to = resp.headers()["location"].to_str().unwrap().to_string();
                url = if to.starts_with('/') {
                    format!("{}{to}", self.root)
                } else {
                    to
                };
                method = "GET".into();
                body = None;
                continue;
            }
            let headers = resp.headers().clone();
            return Page {
                status,
                url,
                body: resp.text().unwrap(),
                headers,
            };
        }
        panic!("too many redirects from {path}");
    }

    /// A file sent with a form's token (multipart/form-data), as the upload form does.
    pub(crate) fn upload(&mut self, path: &str, csrf: &str, filename: &str, content: &str) -> Page {
        let b = "issho-test-boundary";
        let body = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: text/plain\r\n\r\n{content}\r\n--{b}--\r\n"
        );
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let r = self
            .http
            .post(self.url(path))
            .header("cookie", cookie.join("; "))
            .header("content-type", format!("multipart/form-data; boundary={b}"))
            .body(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        if status == 303 {
            let to = r.headers()["location"].to_str().unwrap().to_string();
            return self.get(&to);
        }
        let headers = r.headers().clone();
        Page {
            status,
            url: path.to_string(),
            body: r.text().unwrap(),
            headers,
        }
    }

    pub(crate) fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None, None)
    }

    pub(crate) fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send("POST", path, Some(form), None)
    }

    /// Sign in as `user` (the authorization server's page, its hidden fields carried).
    pub(crate) fn sign_in(&mut self, user: &str) -> Page {
        let login = self.get("/web/signin");
        assert_eq!(login.status, 200, "{}", login.body);
        assert!(login.url.contains("/auth/authorize?"), "{}", login.url);
        let mut fields: Vec<(String, String)> = hidden_fields(&login.body);
        fields.push(("username".into(), user.into()));
        fields.push(("password".into(), "a long password".into()));
        fields.push(("decision".into(), "allow".into()));
        let f: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.post("/auth/authorize", &f)
    }
}

pub(crate) fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The hidden inputs of a page: (name, value).
pub(crate) fn hidden_fields(body: &str) -> Vec<(String, String)> {
    body.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let v = rest.split_once("value=\"")?.1.split_once('"')?.0;
            Some((name.to_string(), unescape(v)))
        })
        .collect()
}

pub(crate) fn csrf(body: &str) -> String {
    hidden_fields(body)
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .expect("a form with a CSRF token")
        .1
}
