//! easel-api
