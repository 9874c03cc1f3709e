use pm_core::wire::{decode_error, encode_call, FrameBuilder, Incoming};
use pm_transport::{from_unix_stream, Connection};

use super::*;

#[derive(Default)]
struct Echo;

#[crate::process(name = "echo", version = "0.1.0")]
impl Echo {
    #[public]
    async fn twice(&self, n: u32) -> u32 {
        n * 2
    }
}

fn options(token: &str) -> ServeOptions {
    ServeOptions {
        token: Token::from_string(token.into()),
        max_frame: 4096,
        max_in_flight: 8,
        peer_uids: Vec::new(),
    }
}

async fn next(conn: &mut Connection) -> Frame {
    match tokio::time::timeout(Duration::from_secs(5), conn.receiver.recv()).await {
        Ok(Some(Ok(Incoming::Frame(frame)))) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// Says hello with the right token and inits with no dependencies.
async fn greet(client: &mut Connection) {
    let mut hello = FrameBuilder::new(FrameKind::Hello, 0, 4096);
    hello
        .named(&Hello {
            protocol: PROTOCOL_VERSION,
            token: "secret".into(),
        })
        .expect("fits");
    client
        .sender
        .send(hello.finish().expect("fits"))
        .expect("open");
    assert_eq!(next(client).await.kind(), FrameKind::Welcome);
    let mut init = FrameBuilder::new(FrameKind::Init, 1, 4096);
    init.raw(&[0xc0]).expect("fits");
    client
        .sender
        .send(init.finish().expect("fits"))
        .expect("open");
    assert_eq!(next(client).await.kind(), FrameKind::ReplyOk);
}

/// A served connection after a good handshake and init, over a real socketpair.
async fn connected() -> (Connection, tokio::task::JoinHandle<ServeEnd>) {
    let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
    let (mut client, server) = (
        from_unix_stream(a, 4096, "t"),
        from_unix_stream(b, 4096, "t"),
    );
    let served = tokio::spawn(serve::<Echo>(server, options("secret")));
    greet(&mut client).await;
    (client, served)
}

#[tokio::test]
async fn unknown_methods_and_undecodable_arguments_get_error_replies_and_the_connection_lives() {
    let (mut client, _served) = connected().await;
    client
        .sender
        .send(encode_call(2, "nope", None, &(1u32,), 4096).expect("fits"))
        .expect("open");
    let reply = next(&mut client).await;
    assert_eq!((reply.kind(), reply.id()), (FrameKind::ReplyErr, 2));
    assert_eq!(decode_error(&reply).kind, RemoteErrorKind::UnknownMethod);

    client
        .sender
        .send(encode_call(3, "twice", None, &("not a number",), 4096).expect("fits"))
        .expect("open");
    let reply = next(&mut client).await;
    assert_eq!(decode_error(&reply).kind, RemoteErrorKind::InvalidArguments);

    let mut malformed = FrameBuilder::new(FrameKind::Call, 4, 4096);
    malformed.raw(&[0xc1, 0xc1]).expect("fits");
    client
        .sender
        .send(malformed.finish().expect("fits"))
        .expect("open");
    let reply = next(&mut client).await;
    assert_eq!(
        (reply.id(), decode_error(&reply).kind),
        (4, RemoteErrorKind::InvalidArguments)
    );

    client
        .sender
        .send(encode_call(5, "twice", None, &(21u32,), 4096).expect("fits"))
        .expect("open");
    let reply = next(&mut client).await;
    assert_eq!(reply.kind(), FrameKind::ReplyOk);
    assert_eq!(reply.decode::<u32>().expect("u32"), 42);
}

#[tokio::test]
async fn an_oversized_call_gets_an_error_reply_for_its_id_and_the_next_call_works() {
    let (mut client, _served) = connected().await;
    let big = encode_call(7, "twice", None, &(vec![0u8; 10_000],), 1 << 20).expect("fits");
    client.sender.send(big).expect("open");
    let reply = next(&mut client).await;
    assert_eq!((reply.kind(), reply.id()), (FrameKind::ReplyErr, 7));
    assert_eq!(decode_error(&reply).kind, RemoteErrorKind::TooLarge);
    client
        .sender
        .send(encode_call(8, "twice", None, &(1u32,), 4096).expect("fits"))
        .expect("open");
    assert_eq!(next(&mut client).await.decode::<u32>().expect("u32"), 2);
}

/// A process whose calls wait for a release it is told about.
#[derive(Default)]
struct Gate;

#[crate::process(name = "gate", version = "0.1.0")]
impl Gate {
    #[public]
    async fn wait(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }
}

#[tokio::test]
async fn at_full_capacity_cancels_and_shutdown_still_get_through() {
    let (mut client, server) = pm_transport::channel_pair();
    let opts = ServeOptions {
        token: Token::from_string("secret".into()),
        max_frame: 4096,
        max_in_flight: 2,
        peer_uids: Vec::new(),
    };
    let served = tokio::spawn(serve::<Gate>(server, opts));
    greet(&mut client).await;
    // Two long calls fill both slots; a third waits.
    for id in [10, 11, 12] {
        client
            .sender
            .send(encode_call(id, "wait", None, &(60_000u64,), 4096).expect("fits"))
            .expect("open");
    }
    // Cancelling a running call frees its slot for the waiting one.
    client
        .sender
        .send(Frame::empty(FrameKind::Cancel, 10))
        .expect("open");
    // A shutdown is read and answered although the process is busy.
    let mut shutdown = FrameBuilder::new(FrameKind::Shutdown, 20, 4096);
    shutdown.value(&50u64).expect("fits");
    client
        .sender
        .send(shutdown.finish().expect("fits"))
        .expect("open");
    let mut replies = Vec::new();
    while let Ok(Some(Ok(Incoming::Frame(frame)))) =
        tokio::time::timeout(Duration::from_secs(5), client.receiver.recv()).await
    {
        replies.push((frame.id(), frame.kind()));
    }
    assert!(replies.contains(&(20, FrameKind::ReplyOk)), "{replies:?}");
    assert!(replies.contains(&(11, FrameKind::ReplyErr)), "{replies:?}");
    assert!(replies.contains(&(12, FrameKind::ReplyErr)), "{replies:?}");
    assert_eq!(served.await.expect("task"), ServeEnd::Shutdown);
}

/// A served `Gate` over channels, with `max_in_flight` call slots.
async fn gate(max_in_flight: usize) -> (Connection, tokio::task::JoinHandle<ServeEnd>) {
    let (mut client, server) = pm_transport::channel_pair();
    let opts = ServeOptions {
        token: Token::from_string("secret".into()),
        max_frame: 4096,
        max_in_flight,
        peer_uids: Vec::new(),
    };
    let served = tokio::spawn(serve::<Gate>(server, opts));
    greet(&mut client).await;
    (client, served)
}

#[tokio::test]
async fn a_health_check_is_answered_while_every_call_slot_is_taken() {
    let (mut client, _served) = gate(1).await;
    client
        .sender
        .send(encode_call(10, "wait", None, &(60_000u64,), 4096).expect("fits"))
        .expect("open");
    client
        .sender
        .send(encode_call(11, HEALTH_METHOD, None, &(), 4096).expect("fits"))
        .expect("open");
    let reply = next(&mut client).await;
    assert_eq!((reply.id(), reply.kind()), (11, FrameKind::ReplyOk));
    let status: pm_core::HealthStatus = reply.decode().expect("a health status");
    assert_eq!(status.status, pm_core::HealthState::Healthy);
}

#[tokio::test]
async fn a_second_call_with_an_id_in_flight_is_refused_and_the_first_still_answers() {
    let (mut client, _served) = gate(8).await;
    for millis in [200u64, 0] {
        client
            .sender
            .send(encode_call(10, "wait", None, &(millis,), 4096).expect("fits"))
            .expect("open");
    }
    let refused = next(&mut client).await;
    assert_eq!((refused.id(), refused.kind()), (10, FrameKind::ReplyErr));
    let error = decode_error(&refused);
    assert_eq!(error.kind, RemoteErrorKind::InvalidArguments);
    assert!(error.message.contains("already in flight"), "{error:?}");
    let first = next(&mut client).await;
    assert_eq!((first.id(), first.kind()), (10, FrameKind::ReplyOk));
    assert_eq!(first.decode::<u64>().expect("u64"), 200);
}

#[tokio::test]
async fn an_oversized_call_during_a_shutdown_gets_a_shutting_down_reply() {
    let (a, b) = tokio::net::UnixStream::pair().expect("socketpair");
    let (mut client, server) = (
        from_unix_stream(a, 1 << 20, "t"),
        from_unix_stream(b, 4096, "t"),
    );
    let opts = ServeOptions {
        token: Token::from_string("secret".into()),
        max_frame: 4096,
        max_in_flight: 8,
        peer_uids: Vec::new(),
    };
    let _served = tokio::spawn(serve::<Gate>(server, opts));
    greet(&mut client).await;
    // A running call keeps the shutdown draining for a while.
    client
        .sender
        .send(encode_call(10, "wait", None, &(500u64,), 4096).expect("fits"))
        .expect("open");
    let mut shutdown = FrameBuilder::new(FrameKind::Shutdown, 20, 4096);
    shutdown.value(&2_000u64).expect("fits");
    client
        .sender
        .send(shutdown.finish().expect("fits"))
        .expect("open");
    let big = encode_call(30, "wait", None, &(vec![0u8; 10_000],), 1 << 20).expect("fits");
    client.sender.send(big).expect("open");
    let refused = next(&mut client).await;
    assert_eq!((refused.id(), refused.kind()), (30, FrameKind::ReplyErr));
    assert_eq!(decode_error(&refused).kind, RemoteErrorKind::ShuttingDown);
}

#[tokio::test]
async fn a_wrong_token_is_rejected_before_anything_is_dispatched() {
    let (mut client, server) = pm_transport::channel_pair();
    let served = tokio::spawn(serve::<Echo>(server, options("secret")));
    let mut hello = FrameBuilder::new(FrameKind::Hello, 0, 4096);
    hello
        .named(&Hello {
            protocol: PROTOCOL_VERSION,
            token: "guess".into(),
        })
        .expect("fits");
    client
        .sender
        .send(hello.finish().expect("fits"))
        .expect("open");
    client
        .sender
        .send(encode_call(2, "twice", None, &(1u32,), 4096).expect("fits"))
        .expect("open");
    let reply = next(&mut client).await;
    assert_eq!(reply.kind(), FrameKind::Reject);
    assert!(
        matches!(served.await.expect("task"), ServeEnd::Refused(reason) if reason.contains("token"))
    );
    assert!(
        client.receiver.recv().await.is_none(),
        "the connection was closed"
    );
}

#[test]
fn the_generated_method_table_lists_names_and_types() {
    assert_eq!(Echo::METHODS.len(), 1);
    assert_eq!(Echo::METHODS[0].name, "twice");
    assert_eq!(Echo::METHODS[0].args, &["u32"]);
    assert_eq!(Echo::METHODS[0].ret, "u32");
}
