//! Object-store errors in words a user can act on.
//!
//! object_store's messages carry the HTTP exchange: a missing bucket is a
//! 404 with S3's XML body, missing credentials are a 403 from the instance
//! metadata address (169.254.169.254) that the credential chain falls back
//! to. These become one plain sentence naming the fix.

/// What to do when no credentials were found.
pub const NO_S3_CREDENTIALS: &str = "no S3 credentials: set the access_key and secret_key mount options, \
[ufs.s3] access_key/secret_key in the config file, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY \
(the instance metadata service gave none)";

/// The reason to show for a failed request to the store at `uri`.
pub fn describe(uri: &str, e: &object_store::Error) -> String {
    describe_text(uri, &e.to_string())
}

fn describe_text(uri: &str, raw: &str) -> String {
    let s3 = uri.starts_with("s3://") || uri.starts_with("s3a://");
    // The credential chain's last resorts: the EC2 instance metadata
    // service (its token and role paths, at 169.254.169.254 unless
    // AWS_METADATA_ENDPOINT moves it) and the ECS container endpoint.
    let metadata = ["/latest/api/token", "/latest/meta-data/", "169.254.170.2"];
    if s3 && metadata.iter().any(|m| raw.contains(m)) {
        return NO_S3_CREDENTIALS.to_string();
    }
    let Some(code) = xml_tag(raw, "Code") else {
        return raw.to_string();
    };
    let message = xml_tag(raw, "Message").unwrap_or_default();
    let bucket = xml_tag(raw, "BucketName").unwrap_or_else(|| bucket_of(uri).to_string());
    match code.as_str() {
        "NoSuchBucket" => format!(
            "bucket {bucket} does not exist (create it, or check the URI and the endpoint option)"
        ),
        "InvalidAccessKeyId" | "SignatureDoesNotMatch" => format!(
            "the store refused the credentials ({code}: {message}); check access_key and secret_key"
        ),
        "AccessDenied" => format!(
            "access denied to bucket {bucket} ({message}); check the credentials' permissions"
        ),
        _ => {
            // The request line without the XML body.
            let head = raw
                .find("<?xml")
                .or_else(|| raw.find("<Error"))
                .map_or(raw, |i| raw[..i].trim_end_matches([' ', ':']));
            format!("{head}: {code}: {message}")
        }
    }
}

/// The text of the first `<tag>...</tag>`.
fn xml_tag(s: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = s.find(&open)? + open.len();
    let len = s[start..].find(&format!("</{tag}>"))?;
    Some(s[start..start + len].trim().to_string())
}

fn bucket_of(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_become_sentences() {
        let missing = "Generic S3 error: Error performing list request: Error performing GET \
            http://127.0.0.1:1/missing-bucket?list-type=2 in 8ms - Server returned non-2xx status \
            code: 404 Not Found: <?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Error><Code>NoSuchBucket\
            </Code><Message>The specified bucket does not exist</Message><BucketName>missing-bucket\
            </BucketName><RequestId>X</RequestId></Error>";
        assert_eq!(
            describe_text("s3://missing-bucket/x", missing),
            "bucket missing-bucket does not exist (create it, or check the URI and the endpoint option)"
        );
        let imds = "Generic S3 error: Error performing PUT http://169.254.169.254/latest/api/token \
            in 10ms - Server returned non-2xx status code: 403 Forbidden: resolve_deny";
        assert_eq!(describe_text("s3://b/x", imds), NO_S3_CREDENTIALS);
        let other = "Error performing GET http://h/b in 1ms - 409 Conflict: <Error><Code>Busy\
            </Code><Message>try later</Message></Error>";
        let d = describe_text("s3://b", other);
        assert!(
            d.ends_with("409 Conflict: Busy: try later") && !d.contains('<'),
            "{d}"
        );
        assert_eq!(describe_text("gs://b", "plain"), "plain");
    }
}
