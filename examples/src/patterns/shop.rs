//! The microservices example's three services: users, auth (signed tokens) and orders. They
//! never call each other: the manager's program composes them, and orders checks a token's
//! signature with the secret it was given, as a stateless token is meant to be checked.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use pm_runtime::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A user of the shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopUser {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
}

/// Keeps the users.
#[derive(Debug, Default)]
pub struct Users {
    users: Mutex<BTreeMap<u64, ShopUser>>,
}

#[process(name = "users", version = "1.0.0")]
impl Users {
    /// Creates a user; ids count from 1.
    #[public]
    pub async fn create_user(&self, name: String) -> ShopUser {
        let mut users = match self.users.lock() {
            Ok(users) => users,
            Err(poisoned) => poisoned.into_inner(),
        };
        let id = users.len() as u64 + 1;
        let user = ShopUser { id, name };
        users.insert(id, user.clone());
        user
    }
}

/// The shared secret tokens are signed with, given to auth and orders as dependencies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSecret(pub Vec<u8>);

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenError {
    /// Not `<user id>.<signature>`.
    Malformed,
    /// The signature does not match: forged or altered.
    BadSignature,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed => f.write_str("malformed token"),
            TokenError::BadSignature => f.write_str("the token's signature does not match"),
        }
    }
}

fn mac(secret: &[u8], user: u64) -> Result<Hmac<Sha256>, TokenError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| TokenError::Malformed)?;
    mac.update(&user.to_be_bytes());
    Ok(mac)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks `token` against `secret`; the user it was issued to.
pub fn verify_token(secret: &[u8], token: &str) -> Result<u64, TokenError> {
    let (user, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let user: u64 = user.parse().map_err(|_| TokenError::Malformed)?;
    let signature = unhex(signature).ok_or(TokenError::Malformed)?;
    mac(secret, user)?
        .verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    Ok(user)
}

/// Issues signed tokens.
#[derive(Debug)]
pub struct Auth {
    secret: Vec<u8>,
}

#[process(name = "auth", version = "1.0.0")]
impl Auth {
    /// Takes the signing secret.
    pub async fn init(secret: TokenSecret) -> Self {
        Self { secret: secret.0 }
    }

    /// A token for `user`: `<id>.<HMAC-SHA256 of the id, hex>`.
    #[public]
    pub async fn generate_token(&self, user: ShopUser) -> Result<String, TokenError> {
        let signature = mac(&self.secret, user.id)?.finalize().into_bytes();
        Ok(format!("{}.{}", user.id, hex(&signature)))
    }
}

/// An order placed in the shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Its number.
    pub id: u64,
    /// Who placed it, from the token.
    pub user: u64,
    /// What was ordered.
    pub items: Vec<String>,
}

/// Takes orders from holders of a valid token.
#[derive(Debug)]
pub struct Orders {
    secret: Vec<u8>,
    orders: Mutex<Vec<Order>>,
}

#[process(name = "orders", version = "1.0.0")]
impl Orders {
    /// Takes the secret tokens are checked with.
    pub async fn init(secret: TokenSecret) -> Self {
        Self {
            secret: secret.0,
            orders: Mutex::new(Vec::new()),
        }
    }

    /// Places an order for the holder of `token`.
    #[public]
    pub async fn create_order(
        &self,
        token: String,
        items: Vec<String>,
    ) -> Result<Order, TokenError> {
        let user = verify_token(&self.secret, &token)?;
        let mut orders = match self.orders.lock() {
            Ok(orders) => orders,
            Err(poisoned) => poisoned.into_inner(),
        };
        let order = Order {
            id: orders.len() as u64 + 1,
            user,
            items,
        };
        orders.push(order.clone());
        Ok(order)
    }
}
