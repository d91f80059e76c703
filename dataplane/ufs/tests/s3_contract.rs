//! The under-storage contract against a real S3-compatible server (moto's
//! server on loopback), and the errors a bad mount gets.

use std::collections::BTreeMap;

use eddy_ufs::UfsError;
use eddy_ufs::testkit::S3Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_passes_the_contract_at_the_root_and_under_a_prefix() {
    let s3 = S3Server::start();
    s3.create_bucket("contract");
    s3.create_bucket("prefixed");
    let root = eddy_ufs::open("s3://contract", &s3.options())
        .await
        .unwrap();
    eddy_ufs::contract::run_all(root.as_ref()).await;
    let sub = eddy_ufs::open("s3://prefixed/some/prefix/", &s3.options())
        .await
        .unwrap();
    eddy_ufs::contract::run_all(sub.as_ref()).await;
    // The prefix holds everything: nothing leaked to the bucket's root.
    let top = eddy_ufs::open("s3://prefixed", &s3.options())
        .await
        .unwrap();
    let names: Vec<String> = top
        .list(&eddy_ufs::UfsPath::root(), None, 100)
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["some"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streamed_writes_use_multipart_and_read_back() {
    let s3 = S3Server::start();
    s3.create_bucket("big");
    let ufs = eddy_ufs::open("s3://big", &s3.options()).await.unwrap();
    let data: Vec<u8> = (0..20_000_003u32).map(|i| (i % 251) as u8).collect();
    let p = eddy_ufs::UfsPath::parse("a/b.bin").unwrap();
    let mut w = ufs.create(&p).await.unwrap();
    for chunk in data.chunks(3_000_017) {
        w.write(chunk).await.unwrap();
    }
    let st = w.complete().await.unwrap();
    assert_eq!(st.length, data.len() as u64);
    assert_eq!(ufs.stat(&p).await.unwrap().fingerprint, st.fingerprint);
    let back = ufs.read(&p, 7_000_000..15_000_000).await.unwrap();
    assert!(back == data[7_000_000..15_000_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_mounts_fail_at_open_with_the_reason() {
    let s3 = S3Server::start();
    let e = eddy_ufs::open("s3://no-such-bucket/x", &s3.options())
        .await
        .unwrap_err();
    assert!(matches!(e, UfsError::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("no-such-bucket"), "{e}");
    // Nothing listens there: refused quickly, not retried for minutes.
    let mut o = s3.options();
    o.insert("endpoint".into(), "http://127.0.0.1:9".into());
    o.insert("retries".into(), "0".into());
    let t = std::time::Instant::now();
    let e = eddy_ufs::open("s3://b", &o).await.unwrap_err();
    assert!(matches!(e, UfsError::Unavailable { .. }), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
    for (uri, opts, want) in [
        ("s3://", BTreeMap::new(), "bucket"),
        ("s3://b/../x", BTreeMap::new(), "`..`"),
        (
            "s3://b",
            [("virtual_hosted".to_string(), "maybe".to_string())].into(),
            "expected true or false",
        ),
    ] {
        let e = eddy_ufs::open(uri, &opts).await.unwrap_err();
        assert!(
            matches!(e, UfsError::InvalidUri { .. }) && e.to_string().contains(want),
            "{uri}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_a_large_prefix_costs_one_list_request() {
    use futures::StreamExt;
    let s3 = S3Server::start();
    s3.create_bucket("many");
    let ufs = eddy_ufs::open("s3://many", &s3.options()).await.unwrap();
    // More objects than one S3 listing page (1,000 keys) holds, three times.
    let n = 3_000;
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let ufs = ufs.clone();
            async move {
                let p = eddy_ufs::UfsPath::parse(&format!("d/f{i:05}")).unwrap();
                ufs.write(&p, bytes::Bytes::from_static(b"x"))
                    .await
                    .unwrap();
            }
        })
        .await;
    let d = eddy_ufs::UfsPath::parse("d").unwrap();
    let before = s3.requests();
    let page = ufs.list(&d, None, 10).await.unwrap();
    let names: Vec<&str> = page.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names[0], "f00000");
    assert_eq!(names.len(), 10);
    // At most a HEAD (is `d` a file?) and one listing page: the other
    // listing pages (three in all) are never asked for.
    let used = s3.requests() - before;
    assert!((1..=2).contains(&used), "{used} requests for one page");
    // Paging through every entry holds one page at a time.
    let mut after = page.next_start_after;
    let mut seen = 10;
    while let Some(a) = after {
        let p = ufs.list(&d, Some(&a), 1000).await.unwrap();
        seen += p.entries.len();
        after = p.next_start_after;
    }
    assert_eq!(seen, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_at_open() {
    // Moto checks signatures against its IAM users when told to.
    let s3 = S3Server::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let e = eddy_ufs::open("s3://any", &s3.options()).await.unwrap_err();
    assert!(matches!(e, UfsError::Unavailable { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("403") || msg.contains("InvalidAccessKeyId"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosted_addressing_passes_the_contract_through_a_proxy() {
    // `vhost.s3.eddy.test` resolves nowhere: the requests go through an
    // HTTP proxy (moto answers absolute-form requests itself), and moto
    // takes the bucket from the Host header's first label.
    let s3 = S3Server::start();
    s3.create_bucket("vhost");
    let port = s3.endpoint.rsplit(':').next().unwrap();
    let mut o = s3.options();
    o.insert("endpoint".into(), format!("http://s3.eddy.test:{port}"));
    o.insert("virtual_hosted".into(), "true".into());
    o.insert("proxy".into(), s3.endpoint.clone());
    let ufs = eddy_ufs::open("s3://vhost/v", &o).await.unwrap();
    eddy_ufs::contract::run_all(ufs.as_ref()).await;
    // The objects are in that bucket, as path-style addressing sees it.
    let path_style = eddy_ufs::open("s3://vhost/v", &s3.options()).await.unwrap();
    let f = eddy_ufs::UfsPath::parse("c2/r").unwrap();
    assert_eq!(path_style.stat(&f).await.unwrap().length, 10_000);
    // Without the proxy the host does not resolve: refused at open.
    o.remove("proxy");
    o.insert("retries".into(), "0".into());
    let e = eddy_ufs::open("s3://vhost/v", &o).await.unwrap_err();
    assert!(matches!(e, UfsError::Unavailable { .. }), "{e}");
}
