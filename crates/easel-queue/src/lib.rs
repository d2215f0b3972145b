//! easel-queue
