//! The end-to-end suite of the `issho` binary and server, over HTTP, as one test binary (one
//! link instead of eleven: compile time and disk matter on the CI machine). Run one part with
//! `cargo test -p issho --test e2e access::` (the module name is the prefix of its tests).
#![allow(dead_code)]

mod common;
mod concurrency;

mod access;
mod access_rules;
mod attack_review;
mod browser;
mod bulk;
mod bulk_associated;
mod bundles;
mod citus;
mod cli;
mod clients;
mod conformance_r4_examples;
mod conformance_synthea;
mod copy_store;
mod custom_params;
mod documents;
mod emergency;
mod export_engine;
mod identity;
mod lastn;
mod leaks;
mod matrix;
mod merge;
mod oauth;
mod packages;
mod postgres_suite;
mod profiles;
mod protocol;
mod research;
mod rest;
mod search;
mod searchset;
mod several_processes;
mod shared_data;
mod sharing;
mod store_synthea;
mod store_text_and_near;
mod stored_views;
mod terminology;
mod terminology_ops;
mod tokens;
mod views;
mod web;
mod web_browser;
mod web_record;
