//! Integration tests of the dashboard: a real server on 127.0.0.1:0, a raw HTTP client, and
//! headless Chromium when it is installed.

mod browser;
mod cdp;
mod common;
mod http;
