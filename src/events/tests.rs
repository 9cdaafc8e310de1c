use super::*;

fn subject() -> Subject {
    Subject {
        customer: Some("acme".into()),
        product: Some("app".into()),
        version: Some("1.4.2".into()),
        filename: Some("app.tar.gz".into()),
        platform: Some("linux-x86_64".into()),
    }
}

fn completed(result: Completion, sent: u64, reached_end: bool) -> Detail {
    Detail::DownloadCompleted {
        grant: Some("g1".into()),
        result,
        bytes_sent: sent,
        bytes_expected: 100,
        duration_ms: 5,
        reached_end,
        range: None,
    }
}

#[test]
fn ids_increase_within_a_process_even_within_a_millisecond_or_backwards() {
    let a = next_id(1_764_000_000_000);
    let b = next_id(1_764_000_000_000);
    let c = next_id(1_763_999_999_000);
    let d = next_id(1_764_000_000_001);
    assert!(a < b && b < c && c < d, "{a} {b} {c} {d}");
    assert_eq!(a.len(), 3 + 32);
    assert!(a.starts_with("ev_019a"), "{a}: the time comes first");
}

#[test]
fn events_round_trip_as_json_with_type_and_data() {
    let e = Event::new(1_764_000_000_123, subject(), completed(Completion::Complete, 100, true));
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["type"], "download.completed");
    assert_eq!(json["at"], "2025-11-24T16:00:00.123Z");
    assert_eq!(json["customer"], "acme");
    assert_eq!(json["data"]["result"], "complete");
    assert_eq!(json["data"]["bytes_sent"], 100);
    let back: Event = serde_json::from_value(json).unwrap();
    assert_eq!(back, e);
    let denied = Event::new(
        1,
        Subject::default(),
        Detail::DownloadDenied {
            reason: "invalid_signature".into(),
            status: 403,
            grant: None,
            client_ip: Some("192.0.2.1".into()),
            surface: "data_plane".into(),
            count: 1,
        },
    );
    let json = serde_json::to_value(&denied).unwrap();
    assert!(json.get("customer").is_none(), "unknown fields are left out: {json}");
    assert_eq!(serde_json::from_value::<Event>(json).unwrap(), denied);
    let yanked = Event::new(1, subject(), Detail::ReleaseYanked {});
    assert_eq!(serde_json::from_str::<Event>(&serde_json::to_string(&yanked).unwrap()).unwrap(), yanked);
}

#[test]
fn every_type_name_parses_back() {
    for t in EventType::ALL {
        assert_eq!(EventType::parse(t.as_str()), Some(t));
        assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
    }
    assert_eq!(EventType::parse("download"), None);
}

#[test]
fn effects_count_per_dimension() {
    let init = Event::new(
        1_764_000_000_000,
        subject(),
        Detail::DownloadInitiated {
            grant: "g1".into(),
            client_ip: None,
            user_agent: None,
            range: None,
            delivery: "proxy".into(),
            via: None,
            by: None,
        },
    );
    let fx = effects(&init);
    assert_eq!(fx.day, "2025-11-24");
    assert_eq!(fx.add.len(), 6, "one initiation per dimension");
    assert!(fx.add.contains(&(Dimension::Artifact, "app/1.4.2/app.tar.gz".into(), "initiated".into(), 1)));
    assert!(fx.add.contains(&(Dimension::Day, "2025-11-24".into(), "initiated".into(), 1)));
    assert!(fx.seen.contains(&(Dimension::Release, "app/1.4.2".into(), "acme".into())));
    assert_eq!(fx.adopted, Some(("app/1.4.2".into(), "acme".into(), true, 1_764_000_000_000)));

    let partial = effects(&Event::new(1, subject(), completed(Completion::Complete, 40, false)));
    assert!(partial.add.iter().all(|(_, _, m, _)| m == "bytes"), "a complete range short of the end only adds bytes");
    assert_eq!(partial.adopted, None);
    let aborted = effects(&Event::new(1, subject(), completed(Completion::Aborted, 7, false)));
    assert!(aborted.add.contains(&(Dimension::Customer, "acme".into(), "aborted".into(), 1)));
    assert!(aborted.add.contains(&(Dimension::Customer, "acme".into(), "bytes".into(), 7)));
    let done = effects(&Event::new(9, subject(), completed(Completion::Complete, 100, true)));
    assert!(done.add.contains(&(Dimension::Platform, "linux-x86_64".into(), "completed".into(), 1)));
    assert_eq!(done.adopted, Some(("app/1.4.2".into(), "acme".into(), false, 9)));

    let anonymous = Event::new(
        1,
        Subject::default(),
        Detail::DownloadDenied {
            reason: "expired".into(),
            status: 403,
            grant: None,
            client_ip: None,
            surface: "data_plane".into(),
            count: 1,
        },
    );
    let fx = effects(&anonymous);
    assert!(fx.add.contains(&(Dimension::Customer, "-".into(), "denied:expired".into(), 1)));
    assert!(fx.seen.is_empty());
    let admin = Event::new(1, subject(), Detail::ReleaseYanked {});
    assert!(effects(&admin).add.is_empty());
}

#[test]
fn filters_match_all_given_fields() {
    let e = Event::new(1, subject(), Detail::ReleaseYanked {});
    assert!(Filter::default().matches(&e));
    let f = Filter { types: vec![EventType::ReleaseYanked], customer: Some("acme".into()), product: None };
    assert!(f.matches(&e));
    let f = Filter { types: vec![EventType::DownloadDenied], ..Filter::default() };
    assert!(!f.matches(&e));
    let f = Filter { product: Some("other".into()), ..Filter::default() };
    assert!(!f.matches(&e));
}
