//! Table-generic DynamoDB helpers shared by the stores (channels, assets, devices, slots, device
//! health): creating a table for local stacks and tests, whole-item reads and scans by the `id`
//! partition key, index queries, create-only puts, paged scans, recognising a refused
//! condition, and the RFC 3339 timestamp attribute. Nothing here knows an item's layout; the
//! per-table modules ([`crate::store`], [`crate::asset_store`], [`crate::device_store`],
//! [`crate::slot`]) own that. Every failure is a [`StoreError`].

use crate::paging::{decode_cursor, encode_cursor, Page};
use crate::store::StoreError;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Creates `table` (on-demand billing, partition key `id` of type S) if it does not exist; for
/// local stacks and tests. In AWS the tables come from `template.yaml`.
///
/// # Errors
/// [`StoreError::Backend`] when DynamoDB refuses.
pub async fn create_table_if_missing(client: &Client, table: &str) -> Result<(), StoreError> {
    create_table_with(client, table, None, false).await
}

/// A global secondary index of a table made by [`create_table_with`]: partition key `key`
/// (type S), projection ALL, or KEYS_ONLY when `keys_only`.
#[derive(Debug, Clone, Copy)]
pub struct IndexSpec<'a> {
    /// Index name.
    pub name: &'a str,
    /// Its partition key attribute.
    pub key: &'a str,
    /// Project only the keys (readers fetch the item itself).
    pub keys_only: bool,
}

/// [`create_table_if_missing`] with an optional global secondary index and, when `stream`, a
/// `NEW_AND_OLD_IMAGES` stream.
///
/// # Errors
/// [`StoreError::Backend`] when DynamoDB refuses.
pub async fn create_table_with(
    client: &Client,
    table: &str,
    index: Option<IndexSpec<'_>>,
    stream: bool,
) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    };
    if client.describe_table().table_name(table).send().await.is_ok() {
        return Ok(());
    }
    let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(e.to_string());
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build)
    };
    let hash = |name: &str| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(KeyType::Hash)
            .build()
            .map_err(build)
    };
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("id")?)
        .key_schema(hash("id")?);
    if let Some(index) = index {
        let projection =
            if index.keys_only { ProjectionType::KeysOnly } else { ProjectionType::All };
        request = request.attribute_definitions(attr(index.key)?).global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .key_schema(hash(index.key)?)
                .projection(Projection::builder().projection_type(projection).build())
                .build()
                .map_err(build)?,
        );
    }
    if stream {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(build)?,
        );
    }
    request.send().await?;
    Ok(())
}

/// The item `id` of `table` (partition key `id`), strongly consistent; `None` when absent.
///
/// # Errors
/// [`StoreError::Backend`].
pub(crate) async fn get_consistent(
    client: &Client,
    table: &str,
    id: &str,
) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .key("id", AttributeValue::S(id.to_owned()))
        .consistent_read(true)
        .send()
        .await?;
    Ok(out.item)
}

/// Every item of `table` (consistent `Scan`, all 1 MB pages).
///
/// # Errors
/// [`StoreError::Backend`].
pub(crate) async fn scan_all_items(
    client: &Client,
    table: &str,
) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            return Ok(items);
        }
    }
}

/// The items of `table`'s index `index` whose partition key `key` is `value` (`Query`, every
/// page, eventually consistent), stopping after the page that brings them to `max` or more.
///
/// # Errors
/// [`StoreError::Backend`].
pub(crate) async fn query_index(
    client: &Client,
    table: &str,
    index: &str,
    (key, value): (&str, &str),
    max: usize,
) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .query()
            .table_name(table)
            .index_name(index)
            .key_condition_expression("#key = :value")
            .expression_attribute_names("#key", key)
            .expression_attribute_values(":value", AttributeValue::S(value.to_owned()))
            .set_exclusive_start_key(start)
            .send()
            .await?;
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() || items.len() >= max {
            return Ok(items);
        }
    }
}

/// Writes `item` into `table` unless its `id` exists (`PutItem`, `attribute_not_exists(id)`).
///
/// # Errors
/// [`StoreError::AlreadyExists`] when it does, else [`StoreError::Backend`].
pub(crate) async fn put_new(
    client: &Client,
    table: &str,
    item: HashMap<String, AttributeValue>,
) -> Result<(), StoreError> {
    let result = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(id)")
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_conditional_failure(&e) => Err(StoreError::AlreadyExists),
        Err(e) => Err(e.into()),
    }
}

/// One strongly consistent scan page of `table` (items keyed by `id`) after `cursor`.
///
/// # Errors
/// [`StoreError::InvalidCursor`] for a cursor not made by [`encode_cursor`].
pub(crate) async fn scan_page(
    client: &Client,
    table: &str,
    limit: u32,
    cursor: Option<&str>,
) -> Result<Page<HashMap<String, AttributeValue>>, StoreError> {
    let start = cursor.map(|c| decode_cursor(c).ok_or(StoreError::InvalidCursor)).transpose()?;
    let out = client
        .scan()
        .table_name(table)
        .limit(i32::try_from(limit).unwrap_or(i32::MAX))
        .set_exclusive_start_key(
            start.map(|id| HashMap::from([("id".to_owned(), AttributeValue::S(id))])),
        )
        .consistent_read(true)
        .send()
        .await?;
    let next = out
        .last_evaluated_key
        .as_ref()
        .and_then(|k| k.get("id"))
        .and_then(|v| v.as_s().ok())
        .map(|id| encode_cursor(id));
    Ok(Page { items: out.items.unwrap_or_default(), next })
}

/// One conditional `UpdateItem` of the item whose key attribute `key.0` is `key.1` in
/// `table`: `update` if `condition` holds, `#name` placeholders from `names` (each `#n`
/// standing for attribute `n`), `:value` placeholders from `values`. `Ok(false)` when the
/// condition failed (the item absent included).
///
/// # Errors
/// [`StoreError::Backend`] for any other failure (after the SDK's bounded retries).
pub async fn update_if(
    client: &Client,
    table: &str,
    key: (&str, &str),
    update: &str,
    condition: &str,
    names: &[&str],
    values: Vec<(&str, AttributeValue)>,
) -> Result<bool, StoreError> {
    let result = client
        .update_item()
        .table_name(table)
        .key(key.0, AttributeValue::S(key.1.to_owned()))
        .update_expression(update)
        .condition_expression(condition)
        .set_expression_attribute_names(Some(
            names.iter().map(|n| (format!("#{n}"), (*n).to_owned())).collect(),
        ))
        .set_expression_attribute_values(Some(
            values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        ))
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes item `id` of `table` if it exists and its `version` attribute is `version`
/// (one conditional `DeleteItem`, so no write can come between the check and the delete).
///
/// # Errors
/// [`StoreError::NotFound`] when absent, [`StoreError::VersionConflict`] when its version
/// differs.
pub async fn delete_if_version(
    client: &Client,
    table: &str,
    id: &str,
    version: u64,
) -> Result<(), StoreError> {
    let result = client
        .delete_item()
        .table_name(table)
        .key("id", AttributeValue::S(id.to_owned()))
        .condition_expression("attribute_exists(id) AND #version = :version")
        .expression_attribute_names("#version", "version")
        .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
        .return_values_on_condition_check_failure(
            aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
        )
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_conditional_failure(&e) => {
            use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
            let old = match e.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(refused)) => {
                    refused.item.clone()
                }
                _ => None,
            };
            let exists = match old {
                Some(_) => true,
                None => client
                    .get_item()
                    .table_name(table)
                    .key("id", AttributeValue::S(id.to_owned()))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string()))?
                    .item
                    .is_some(),
            };
            Err(if exists { StoreError::VersionConflict } else { StoreError::NotFound })
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether DynamoDB refused a write because its condition did not hold
/// (`ConditionalCheckFailedException`), as opposed to any other failure.
pub fn is_conditional_failure<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// `t` as an RFC 3339 string attribute.
pub(crate) fn rfc3339(t: OffsetDateTime) -> AttributeValue {
    AttributeValue::S(t.format(&Rfc3339).unwrap_or_default())
}
