//! The web application's pages at the benchmark's size: `issho serve --demo` on the loaded
//! store (the bench's population is the demo's, so the demo users exist; the store is not
//! refilled), sign-in through the authorization server as a browser would, then the person's
//! portal (`demo-patient`: their whole record, charts, access log) and a doctor's record page
//! (`demo-doctor-a` with the demo patient open: the summary across institutions and charts),
//! each requested `reps` times in sequence.

use crate::http::Conn;
use crate::search::MixResult;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A browser's session: the cookies it holds.
struct Browser {
    conn: Conn,
    cookies: Vec<(String, String)>,
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One request (no redirect followed): status, Location, body.
    fn send(
        &mut self,
        method: &str,
        path: &str,
        form: Option<&str>,
    ) -> Result<(u16, String, String), String> {
        let cookie = self.cookie_header();
        let mut headers = vec![("Cookie", cookie.as_str()), ("Accept", "text/html")];
        if form.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let r = self
            .conn
            .request(method, path, &headers, form.map(str::as_bytes))
            .map_err(|e| e.to_string())?;
        if let Some(sc) = r.header("set-cookie") {
            let kv = sc.split(';').next().unwrap_or("");
            if let Some((k, v)) = kv.split_once('=') {
                self.cookies.retain(|(n, _)| n != k);
                if !v.is_empty() {
                    self.cookies.push((k.to_string(), v.to_string()));
                }
            }
        }
        let loc = r.header("location").unwrap_or("").to_string();
        Ok((r.status, loc, String::from_utf8_lossy(&r.body).into_owned()))
    }

    /// Follow redirects (local paths) to the page.
    fn go(&mut self, method: &str, path: &str, form: Option<&str>) -> Result<String, String> {
        let (mut st, mut loc, mut body) = self.send(method, path, form)?;
        for _ in 0..8 {
            if !(300..400).contains(&st) {
                return Ok(body);
            }
            let local = match loc.find("://") {
                Some(i) => loc[i + 3..]
                    .find('/')
                    .map(|j| loc[i + 3 + j..].to_string())
                    .unwrap_or_default(),
                None => loc.clone(),
            };
            (st, loc, body) = self.send("GET", &local, None)?;
        }
        Err("too many redirects".into())
    }

    fn sign_in(&mut self, user: &str) -> Result<String, String> {
        let page = self.go("GET", "/web/signin", None)?;
        let mut fields: Vec<String> = page
            .split("<input type=\"hidden\" name=\"")
            .skip(1)
            .filter_map(|rest| {
                let (name, rest) = rest.split_once('"')?;
                let v = rest.split_once("value=\"")?.1.split_once('"')?.0;
                Some(format!("{name}={}", enc(&v.replace("&amp;", "&"))))
            })
            .collect();
        fields.push(format!("username={user}"));
        fields.push("password=issho-demo".into());
        fields.push("decision=allow".into());
        self.go("POST", "/auth/authorize", Some(&fields.join("&")))
    }
}

fn csrf(page: &str) -> Option<String> {
    let rest = page.split("name=\"csrf\" value=\"").nth(1)?;
    Some(rest.split('"').next()?.to_string())
}

/// Time `reps` GETs of `path`.
fn time_page(
    b: &mut Browser,
    name: &'static str,
    path: &str,
    reps: usize,
    marker: &str,
) -> MixResult {
    let mut lat = Vec::with_capacity(reps);
    let mut error = None;
    let mut size = 0;
    let started = Instant::now();
    for _ in 0..reps {
        let t = Instant::now();
        match b.send("GET", path, None) {
            Ok((200, _, body)) if body.contains(marker) => {
                lat.push(t.elapsed());
                size = body.len();
            }
            Ok((st, _, body)) => {
                // What the page says after its first section (the part that was expected).
                let at = body.find("</section>").map(|i| i + 10).unwrap_or(0);
                error = Some(format!(
                    "{path}: {st} {}",
                    body[at..].chars().take(300).collect::<String>()
                ));
                break;
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let total = started.elapsed().as_secs_f64();
    lat.sort();
    MixResult {
        name,
        reps: lat.len(),
        p50: crate::measure::percentile(&lat, 0.5),
        p95: crate::measure::percentile(&lat, 0.95),
        p99: crate::measure::percentile(&lat, 0.99),
        rate: lat.len() as f64 / total.max(1e-9),
        matches: format!("{} KiB of HTML", size / 1024),
        error,
    }
}

/// The pages over `dir`'s store (`store`: its PostgreSQL URL), `reps` times each.
pub fn pages_issho(bin: &Path, dir: &Path, store: Option<&str>, reps: usize) -> Vec<MixResult> {
    let fail = |e: String| {
        vec![MixResult {
            name: "web page: the person's portal (demo-patient)",
            reps: 0,
            p50: 0.0,
            p95: 0.0,
            p99: 0.0,
            rate: 0.0,
            matches: String::new(),
            error: Some(e),
        }]
    };
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir);
    if let Some(url) = store {
        cmd.args(["--store", url]);
    }
    let mut child = match cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    let addr: Option<SocketAddr> = loop {
        line.clear();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            break None;
        }
        if let Some(rest) = line.strip_prefix("issho listening on http://") {
            break rest.split('/').next().and_then(|a| a.parse().ok());
        }
    };
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let result = (|| -> Result<Vec<MixResult>, String> {
        let addr = addr.ok_or("issho serve --demo did not start")?;
        let open = || Conn::open(addr).map_err(|e| e.to_string());
        let mut pat = Browser {
            conn: open()?,
            cookies: Vec::new(),
        };
        let page = pat.sign_in("demo-patient")?;
        if !page.contains("id=\"results\"") {
            return Err(format!(
                "the portal did not open: {}",
                page.chars().take(300).collect::<String>()
            ));
        }
        let portal = time_page(
            &mut pat,
            "web page: the person's portal (demo-patient)",
            "/portal",
            reps,
            "id=\"results\"",
        );
        // A doctor of the demo patient's institutions (which of the two sees the record at
        // this size depends on what was loaded: visits, or a referral document).
        let mut record = None;
        for user in ["demo-doctor-a", "demo-doctor-b"] {
            let mut doc = Browser {
                conn: open()?,
                cookies: Vec::new(),
            };
            let page = doc.sign_in(user)?;
            let token = csrf(&page).ok_or("no form on the clinician's page")?;
            let (st, _, _) = doc.send(
                "POST",
                "/clinician/open",
                Some(&format!("csrf={}&patient=demo-p0-pat1", enc(&token))),
            )?;
            let (_, _, shown) = doc.send("GET", "/clinician", None)?;
            if st == 303 && shown.contains("id=\"summary\"") {
                record = Some(time_page(
                    &mut doc,
                    "web page: a doctor's record page",
                    "/clinician",
                    reps,
                    "id=\"summary\"",
                ));
                break;
            }
        }
        let record = record.ok_or("neither demo doctor sees the demo patient's record")?;
        Ok(vec![portal, record])
    })();
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(200));
    result.unwrap_or_else(fail)
}
