//! The web application in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`) through sign-in, the portal (its charts), a blood-pressure
//! reading entered and charted, the English switch, refusing an institution's data and its
//! effect on another institution's clinician, the emergency physician's break-the-glass and the
//! person's access log that shows it, the pharmacist's summary. Without Chromium it says it
//! skipped. With `ISSHO_SCREENSHOTS=DIR` it saves the main pages there as PNG (the README's
//! `docs/screenshots/` are made so).

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A chromedriver process and one browser session in it.
struct Driver {
    child: Child,
    http: reqwest::blocking::Client,
    url: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Driver {
    /// chromedriver with a headless Chromium, or why not.
    fn start() -> Result<Driver, String> {
        let exe = ["chromedriver", "/usr/bin/chromedriver"]
            .into_iter()
            .find(|c| {
                Command::new(c)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .ok_or("chromedriver is not installed (apt-get install chromium chromium-driver)")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new(exe)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let until = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().is_err() {
            if Instant::now() > until {
                return Err("chromedriver did not start".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1200,1800", "--lang=ja"]}}}});
        let r: Value = http
            .post(format!("{base}/session"))
            .header("content-type", "application/json")
            .body(caps.to_string())
            .send()
            .and_then(|r| r.text())
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))?;
        let id = r["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no browser session: {r}"))?;
        Ok(Driver {
            child,
            http,
            url: format!("{base}/session/{id}"),
        })
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.url);
        let r = match method {
            "GET" => self.http.get(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        };
        let v: Value = serde_json::from_str(&r.send().unwrap().text().unwrap()).unwrap();
        assert!(v["value"]["error"].is_null(), "{method} {path}: {v}");
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url}));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("{css}: {v}"))
            .to_string()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), json!({}));
    }

    fn script(&self, js: &str) -> Value {
        self.call("POST", "/execute/sync", json!({"script": js, "args": []}))
    }

    /// Click what leads to another page, and wait until that page has loaded (the old
    /// document is marked first; up to 15 s).
    fn submit(&self, css: &str) {
        self.script("window.__isshoOld = true;");
        self.click(css);
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let done = self.script(
                "return window.__isshoOld === undefined && document.readyState === 'complete';",
            );
            if done == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < until, "{css}: no new page");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({"text": text}),
        );
    }

    fn source(&self) -> String {
        self.call("GET", "/source", Value::Null)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The page source once it holds `text` (a click's navigation may still be under way;
    /// up to 15 s), or the last source seen.
    fn wait_for(&self, text: &str) -> String {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.source();
            if s.contains(text) || Instant::now() > until {
                return s;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the page's URL ends with `path` (up to 15 s).
    fn wait_url(&self, path: &str) -> String {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let u = self.current();
            if u.ends_with(path) || Instant::now() > until {
                return u;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn current(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Save the viewport as `name`.png when ISSHO_SCREENSHOTS names a directory.
    fn shot(&self, name: &str) {
        let Ok(dir) = std::env::var("ISSHO_SCREENSHOTS") else {
            return;
        };
        let b64 = self.call("GET", "/screenshot", Value::Null);
        let png = issho_model::base64::decode(b64.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/{name}.png"), png).unwrap();
    }

    /// Sign in at the authorization server's page as `user` (after signing out any other).
    fn sign_in(&self, root: &str, user: &str) {
        self.go(&format!("{root}/"));
        if self.source().contains("action=\"/web/signout\"") {
            self.submit("form[action='/web/signout'] button");
        }
        self.submit("a.button[href='/web/signin']");
        self.type_in("#u", user);
        self.type_in("#p", "a long password");
        self.submit("button[name=decision]");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.url).send();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_web_application_in_a_real_browser() {
    let d = match Driver::start() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipped: the browser tests ({why})");
            return;
        }
    };
    let c = crate::web::setup();
    let root = c.s.base.trim_end_matches("/fhir").to_string();

    // The landing page in Japanese; the person signs in and sees the record, charted.
    d.go(&format!("{root}/"));
    assert!(d.source().contains("サインイン"));
    d.shot("landing");
    d.sign_in(&root, "pat");
    let at = d.wait_url("/portal");
    assert!(at.ends_with("/portal"), "{at}");
    let page = d.wait_for("HbA1c");
    assert!(page.contains("わたしの記録") && page.contains("HbA1c") && page.contains("<svg"));
    d.shot("portal-ja");

    // A blood-pressure reading through the form (the time field set as a person picks it).
    d.click("#m-kind option[value=bp]");
    d.type_in("#m-value", "148");
    d.type_in("#m-value2", "92");
    d.call(
        "POST",
        "/execute/sync",
        json!({"script": "document.getElementById('m-at').value = '2026-12-02T07:45';", "args": []}),
    );
    d.submit("#phr button[type=submit]");
    let page = d.wait_for("記録しました");
    assert!(page.contains("記録しました"), "{page}");
    assert!(
        page.contains("2026-12-02 148 mmHg"),
        "the reading is charted"
    );

    // A scale's export uploaded through the file field.
    let csv = std::env::temp_dir().join(format!("issho-scale-{}.csv", std::process::id()));
    std::fs::write(
        &csv,
        "測定日時,体重(kg),機器\n2026/12/03 07:00,58.4,HBF-9\n",
    )
    .unwrap();
    d.type_in("#u-file", csv.to_str().unwrap());
    d.submit("form[action='/portal/upload'] button[type=submit]");
    let page = d.wait_for("取り込みました");
    let _ = std::fs::remove_file(&csv);
    assert!(page.contains("取り込みました"), "{page}");
    assert!(page.contains("2026-12-03 58.4 kg"), "the upload is charted");
    assert!(page.contains("記録の年表"), "the timeline");

    // English.
    d.submit("a[hreflang=en]");
    let page = d.wait_for("My record");
    assert!(page.contains("My record") && page.contains("Who looked at my record"));
    d.shot("portal-en");
    d.submit("a[hreflang=ja]");
    d.wait_for("わたしの記録");

    // Clinic B sees hospital A's results; the person refuses to share A's records.
    d.sign_in(&root, "doc-b");
    d.type_in("#f-name", "ヤマダ");
    d.submit("#find button[type=submit]");
    d.submit("form[action='/clinician/open'] button");
    let page = d.source();
    assert!(
        page.contains("7.3") && page.contains("あおば病院"),
        "{page}"
    );
    d.shot("clinician");
    d.sign_in(&root, "pat");
    d.click("#c-org option[value='Organization/org-a']");
    d.click("input[name=kind][value=custodian]");
    d.submit("#refuse-org button[type=submit]");
    // The refusal is among the settings in force (a table only shown when there is one).
    assert!(d.source().contains("<caption>有効な設定</caption>"));
    d.shot("consent");
    d.sign_in(&root, "doc-b");
    d.type_in("#f-name", "ヤマダ");
    d.submit("#find button[type=submit]");
    d.submit("form[action='/clinician/open'] button");
    assert!(
        !d.source().contains("7.3"),
        "clinic B no longer sees A's results"
    );

    // The emergency physician breaks the glass.
    d.sign_in(&root, "er");
    d.type_in("#f-member", "1234567");
    d.submit("#find button[type=submit]");
    assert!(!d.source().contains("山田"), "not in care: not found");
    // Known by the insurance card: member ID, birth date and why.
    d.type_in("#e-member", "1234567");
    d.call(
        "POST",
        "/execute/sync",
        json!({"script": "document.getElementById('e-birth').value = '1960-04-01';", "args": []}),
    );
    d.type_in("#e-reason", "意識不明で救急搬送");
    d.submit("#emergency-open button[type=submit]");
    let page = d.source();
    assert!(page.contains("緊急アクセスで開きました"), "{page}");
    assert!(
        page.contains("救急時の要約") && page.contains("HbA1c"),
        "{page}"
    );
    d.shot("emergency");

    // The pharmacist's summary.
    d.sign_in(&root, "pharm");
    d.type_in("#f-name", "山田");
    d.submit("#find button[type=submit]");
    d.submit("form[action='/clinician/open'] button");
    assert!(d.source().contains("薬局向けの要約"));
    d.shot("pharmacist");

    // The person sees the emergency access in the access log.
    d.sign_in(&root, "pat");
    d.go(&format!("{root}/portal#access-log"));
    let page = d.source();
    assert!(page.contains("class=\"glass\""), "break-the-glass marked");
    d.shot("access-log");
}
