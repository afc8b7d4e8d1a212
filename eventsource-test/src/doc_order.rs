//! A small order aggregate for this crate's documentation examples. Not a public API.
#![allow(missing_docs)]

use eventsource::{DomainEvent, aggregate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "doc.order_created")]
pub struct OrderCreated {
    pub customer: String,
    pub total: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "doc.order_item_added")]
pub struct OrderItemAdded {
    pub product: String,
    pub quantity: u32,
    pub unit_price: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "doc.order_shipped")]
pub struct OrderShipped {
    pub tracking: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    #[default]
    Draft,
    Created,
    Shipped,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Order {
    pub status: Status,
    pub customer: String,
    pub total: f64,
    pub items: usize,
    pub tracking: Option<String>,
}

#[aggregate]
impl Order {
    #[handles(OrderCreated)]
    fn on_created(&mut self, e: &OrderCreated) {
        self.status = Status::Created;
        self.customer = e.customer.clone();
        self.total = e.total;
    }

    #[handles(OrderItemAdded)]
    fn on_item_added(&mut self, e: &OrderItemAdded) {
        self.items += 1;
        self.total += f64::from(e.quantity) * e.unit_price;
    }

    #[handles(OrderShipped)]
    fn on_shipped(&mut self, e: &OrderShipped) {
        self.status = Status::Shipped;
        self.tracking = Some(e.tracking.clone());
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderError {
    AlreadyCreated,
    NotCreated,
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OrderError::AlreadyCreated => "order already created",
            OrderError::NotCreated => "order must be created first",
        })
    }
}

impl std::error::Error for OrderError {}

impl Order {
    pub fn create(&self, customer: &str, total: f64) -> Result<OrderCreated, OrderError> {
        if self.status != Status::Draft {
            return Err(OrderError::AlreadyCreated);
        }
        Ok(OrderCreated {
            customer: customer.into(),
            total,
        })
    }

    pub fn add_item(
        &self,
        product: &str,
        quantity: u32,
        unit_price: f64,
    ) -> Result<OrderItemAdded, OrderError> {
        if self.status != Status::Created {
            return Err(OrderError::NotCreated);
        }
        Ok(OrderItemAdded {
            product: product.into(),
            quantity,
            unit_price,
        })
    }

    pub fn ship(&self, tracking: &str) -> Result<OrderShipped, OrderError> {
        if self.status != Status::Created {
            return Err(OrderError::NotCreated);
        }
        Ok(OrderShipped {
            tracking: tracking.into(),
        })
    }
}
