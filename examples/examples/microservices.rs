//! The microservices pattern: auth, users and orders, each its own child process, composed by
//! the manager's program over typed RPC: create a user, issue a signed token, place an order.
//! A forged token is refused by the orders service, which checks signatures itself.
//!
//! Run it with `cargo run -p pm-examples --example microservices`.

#![allow(clippy::print_stdout)] // an example prints what it shows

use pm_examples::built_binary;
use pm_examples::patterns::shop::{Auth, Orders, TokenError, TokenSecret, Users};
use pm_runtime::prelude::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pm = ProcessManager::new(ProcessManagerConfig {
        isolation: Isolation::Child,
        ..Default::default()
    });
    // A real deployment reads the secret from its secret store; it reaches both services as
    // their dependencies, never on a command line.
    let secret = TokenSecret(b"example-signing-secret-0123456789".to_vec());
    let auth_service = pm
        .spawn::<Auth>(
            built_binary("auth")?,
            SpawnOptions::default().dependencies(secret.clone()),
        )
        .await?;
    let user_service = pm
        .spawn::<Users>(built_binary("users")?, SpawnOptions::default())
        .await?;
    let order_service = pm
        .spawn::<Orders>(
            built_binary("orders")?,
            SpawnOptions::default().dependencies(secret),
        )
        .await?;
    for info in pm.list() {
        println!(
            "service {:<6} pid {}",
            info.name,
            info.pid.unwrap_or_default()
        );
    }

    let user = user_service.create_user("ada".into()).await?;
    println!("users.create_user(\"ada\") -> {user:?}");
    let token = auth_service.generate_token(user.clone()).await?;
    println!("auth.generate_token -> {token}");
    let order = order_service
        .create_order(token.clone(), vec!["keyboard".into(), "mouse".into()])
        .await?;
    println!("orders.create_order -> {order:?}");

    let forged = format!("2.{}", token.split_once('.').map_or("", |(_, sig)| sig));
    match order_service
        .create_order(forged, vec!["everything".into()])
        .await
    {
        Err(err) => println!(
            "a forged token -> refused: {:?}",
            err.remote_payload::<TokenError>()
        ),
        Ok(order) => println!("a forged token -> unexpectedly accepted: {order:?}"),
    }
    pm.shutdown().await?;
    Ok(())
}
