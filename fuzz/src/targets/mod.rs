//! The fuzz targets. Each is a `Target`: a function over one input that
//! must not panic, its seed generator, and its mutation dictionary.

pub mod frame;
pub mod http;
pub mod record;
pub mod s3req;
pub mod sigv4;

use crate::driver::Target;

pub fn all() -> [&'static Target; 4] {
    [&frame::TARGET, &record::TARGET, &http::TARGET, &sigv4::TARGET]
}

pub fn by_name(name: &str) -> Option<&'static Target> {
    all().into_iter().find(|t| t.name == name)
}
