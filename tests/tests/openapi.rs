//! The OpenAPI document against the router that serves it (moto-backed stores): every
//! documented operation is routed (none falls to the 404/405 fallbacks), and the router
//! serves the document at `GET /openapi.json`. The router is built from the documented
//! routes (`channels_api::openapi::api_router`), so no undocumented route can exist.

use axum::http::{header, Method, StatusCode};
use axum::Router;
use channels_api::{router, Deps};
use std::sync::Arc;
use streamstack_core::device::DeviceSettings;
use streamstack_core::device_store::DynamoDeviceStore;
use streamstack_tests::{api_config, asset_store, aws, channel_store, unique};

async fn app() -> Router {
    let aws = aws().await;
    let devices = DynamoDeviceStore::new(aws.dynamodb.clone(), unique("devices"));
    devices.create_table_if_missing().await.expect("create devices table");
    let deps = Deps::new(channel_store(&aws).await, asset_store(&aws).await, api_config())
        .with_devices(Arc::new(devices), None, DeviceSettings::default());
    router(Arc::new(deps))
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = app().await;
    let doc = channels_api::openapi::document();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let uri = path.replace("{id}", "absent-id").replace("{gateway_id}", "gw-1");
        for method in item.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let r = streamstack_tests::router::call(&app, method.clone(), &uri, &[], None).await;
            let fallback = (r.status == StatusCode::NOT_FOUND
                && r.body["error"]["message"] == "no such resource")
                || r.status == StatusCode::METHOD_NOT_ALLOWED;
            assert!(!fallback, "{method} {path} is documented but not routed: {}", r.text);
            operations += 1;
        }
    }
    assert!(operations >= 17, "{operations} operations");
}

#[tokio::test]
async fn router_serves_the_document() {
    let app = app().await;
    let r = streamstack_tests::router::call(&app, Method::GET, "/openapi.json", &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(r.text, channels_api::openapi::document_json());
    assert_eq!(r.body["openapi"], "3.1.0");
}
