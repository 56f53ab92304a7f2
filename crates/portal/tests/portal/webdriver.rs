//! The few W3C WebDriver commands the browser test uses, over plain HTTP
//! (<https://www.w3.org/TR/webdriver2/>): a session, navigation, elements by
//! CSS selector, their text, scripts, a screenshot, Chromium's console log
//! and one Chrome DevTools command (media emulation).

use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session; `close` ends it.
pub struct Session {
    http: reqwest::Client,
    driver: String,
    id: String,
}

/// An element of the current page.
pub struct Element(String);

impl Session {
    /// Opens a session on the driver at `driver` with `capabilities` (always matched).
    pub async fn start(driver: &str, capabilities: Value) -> Self {
        let http = reqwest::Client::new();
        let created = call(
            http.post(format!("{driver}/session"))
                .json(&json!({"capabilities": {"alwaysMatch": capabilities}})),
        )
        .await;
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_owned();
        Self {
            http,
            driver: driver.to_owned(),
            id,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.driver, self.id)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        call(self.http.post(self.url(path)).json(&body)).await
    }

    async fn get(&self, path: &str) -> Value {
        call(self.http.get(self.url(path))).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// Reloads the page (as the browser's reload button does) and waits
    /// until it has loaded.
    pub async fn refresh(&self) {
        self.post("/refresh", json!({})).await;
    }

    pub async fn find(&self, css: &str) -> Element {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        element(&found)
    }

    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        found
            .as_array()
            .unwrap_or_else(|| panic!("elements: {found}"))
            .iter()
            .map(element)
            .collect()
    }

    pub async fn text(&self, element: &Element) -> String {
        let text = self.get(&format!("/element/{}/text", element.0)).await;
        text.as_str()
            .unwrap_or_else(|| panic!("text: {text}"))
            .to_owned()
    }

    /// Resizes the browser window (CSS pixels).
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    pub async fn execute(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Runs `script` as an async function: it ends by calling its last
    /// argument with the value to return.
    pub async fn execute_async(&self, script: &str) -> Value {
        self.post("/execute/async", json!({"script": script, "args": []}))
            .await
    }

    /// A Chrome DevTools Protocol command (ChromeDriver's `goog/cdp/execute`).
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": command, "params": params}),
        )
        .await
    }

    /// The page as PNG bytes.
    pub async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.get("/screenshot").await;
        decode_base64(encoded.as_str().unwrap_or_default())
    }

    /// Chromium's console entries (its `goog:loggingPrefs` extension).
    pub async fn console(&self) -> Vec<Value> {
        let logs = self.post("/se/log", json!({"type": "browser"})).await;
        logs.as_array().cloned().unwrap_or_default()
    }

    pub async fn close(self) {
        call(self.http.delete(self.url(""))).await;
    }
}

fn element(found: &Value) -> Element {
    Element(
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("not an element: {found}"))
            .to_owned(),
    )
}

/// Sends a command; returns its `value`, panicking with the driver's error.
async fn call(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("the driver answers");
    let status = response.status();
    let mut body: Value = response.json().await.expect("the driver answers JSON");
    assert!(status.is_success(), "WebDriver error {status}: {body}");
    body["value"].take()
}

/// Standard base64 (with padding), as WebDriver encodes screenshots.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let sextets: Vec<u8> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(sextets.len() * 3 / 4);
    for chunk in sextets.chunks(4) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, s)| acc | (u32::from(*s) << (18 - 6 * i)));
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_with_and_without_padding() {
    assert_eq!(decode_base64("aGVsbG8="), b"hello");
    assert_eq!(decode_base64("aGk="), b"hi");
    assert_eq!(decode_base64("YWJj"), b"abc");
    assert_eq!(decode_base64(""), b"");
}
