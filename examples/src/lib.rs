//! The order domain shared by the runnable examples in `examples/`.
//!
//! An order is created for a customer, gets items, and is shipped. Commands are plain
//! methods on the state that decide which event happens or refuse with an [`OrderError`].

use std::fmt;

use eventsource::{DomainEvent, aggregate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An order was opened for a customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct OrderCreated {
    /// Who ordered.
    pub customer_id: Uuid,
    /// The opening total.
    pub total_amount: f64,
}

/// An item was added to an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct OrderItemAdded {
    /// What.
    pub product_name: String,
    /// How many.
    pub quantity: u32,
    /// Price of one.
    pub unit_price: f64,
}

/// An order left the warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "order.shipped")]
pub struct OrderShipped {
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// Where an order is in its life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Not created yet.
    #[default]
    Draft,
    /// Open: items can be added.
    Created,
    /// Gone: nothing can change.
    Shipped,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// What.
    pub product_name: String,
    /// How many.
    pub quantity: u32,
    /// Price of one.
    pub unit_price: f64,
}

/// The order aggregate's state, rebuilt from its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Where the order is.
    pub status: Status,
    /// Who ordered.
    pub customer_id: Option<Uuid>,
    /// The lines.
    pub items: Vec<Item>,
    /// Opening total plus every line.
    pub total_amount: f64,
    /// Set once shipped.
    pub tracking_number: Option<String>,
}

#[aggregate]
impl Order {
    #[handles(OrderCreated)]
    fn on_created(&mut self, event: &OrderCreated) {
        self.status = Status::Created;
        self.customer_id = Some(event.customer_id);
        self.total_amount = event.total_amount;
    }

    #[handles(OrderItemAdded)]
    fn on_item_added(&mut self, event: &OrderItemAdded) {
        self.total_amount += f64::from(event.quantity) * event.unit_price;
        self.items.push(Item {
            product_name: event.product_name.clone(),
            quantity: event.quantity,
            unit_price: event.unit_price,
        });
    }

    #[handles(OrderShipped)]
    fn on_shipped(&mut self, event: &OrderShipped) {
        self.status = Status::Shipped;
        self.tracking_number = Some(event.tracking_number.clone());
    }
}

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderError {
    /// `create` on an order that exists.
    AlreadyCreated,
    /// A command that needs a created, unshipped order.
    NotCreated,
    /// A change to a shipped order.
    AlreadyShipped,
    /// An item with quantity 0.
    EmptyQuantity,
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OrderError::AlreadyCreated => "order already created",
            OrderError::NotCreated => "order must be created first",
            OrderError::AlreadyShipped => "order already shipped",
            OrderError::EmptyQuantity => "quantity must be at least 1",
        })
    }
}

impl std::error::Error for OrderError {}

impl Order {
    /// Opens the order.
    ///
    /// # Errors
    /// [`OrderError::AlreadyCreated`].
    pub fn create(&self, customer_id: Uuid, total_amount: f64) -> Result<OrderCreated, OrderError> {
        if self.status != Status::Draft {
            return Err(OrderError::AlreadyCreated);
        }
        Ok(OrderCreated {
            customer_id,
            total_amount,
        })
    }

    /// Adds a line.
    ///
    /// # Errors
    /// [`OrderError::NotCreated`], [`OrderError::AlreadyShipped`], [`OrderError::EmptyQuantity`].
    pub fn add_item(
        &self,
        product_name: &str,
        quantity: u32,
        unit_price: f64,
    ) -> Result<OrderItemAdded, OrderError> {
        match self.status {
            Status::Draft => return Err(OrderError::NotCreated),
            Status::Shipped => return Err(OrderError::AlreadyShipped),
            Status::Created => {}
        }
        if quantity == 0 {
            return Err(OrderError::EmptyQuantity);
        }
        Ok(OrderItemAdded {
            product_name: product_name.to_owned(),
            quantity,
            unit_price,
        })
    }

    /// Ships the order.
    ///
    /// # Errors
    /// [`OrderError::NotCreated`] (also when it is already shipped: only a created order ships).
    pub fn ship(&self, tracking_number: &str) -> Result<OrderShipped, OrderError> {
        if self.status != Status::Created {
            return Err(OrderError::NotCreated);
        }
        Ok(OrderShipped {
            tracking_number: tracking_number.to_owned(),
        })
    }
}
