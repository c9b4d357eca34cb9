//! A topic's id (KIP-516), which the `rdkafka` crate does not wrap: librdkafka's
//! `DescribeTopics` admin call, through `rdkafka-sys`.
//!
//! One of the few places the workspace allows `unsafe` code (with the allocator set-up in the
//! binary, SQLite's memory counters, `sysconf` in `loadgen`, the dedup filters' file mappings
//! in the projector and their cache-line hint in the domain). The call
//! sequence follows librdkafka's `rdkafka.h`: every object this function creates (queue,
//! options, topic collection, result event) is destroyed before it returns, on every path, by
//! the guards below; the result's strings are copied out before the event that owns them is
//! destroyed. The client handle is borrowed and outlives the call. It blocks up to `timeout`,
//! so callers run it off the async runtime.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::types::RDKafkaErrorCode;

/// Destroys a librdkafka object when dropped.
struct Owned<T> {
    ptr: *mut T,
    destroy: unsafe extern "C" fn(*mut T),
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: `ptr` was returned by the librdkafka constructor paired with `destroy`
            // and is destroyed exactly once, here.
            unsafe { (self.destroy)(self.ptr) }
        }
    }
}

/// The base64 form of the id, as Kafka's tools print it; `Ok(None)` when the broker reports
/// none (the all-zero id of brokers before KIP-516). The request goes to `broker` (any broker
/// answers it: it is a metadata request) rather than to the controller, librdkafka's default,
/// which some Kafka-protocol brokers do not name. Errors name the failure (unknown topic,
/// broker unreachable, timeout).
pub fn describe_topic_id<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    broker: i32,
    timeout: Duration,
) -> Result<Option<String>, String> {
    let name = CString::new(topic).map_err(|_| "topic name contains NUL".to_string())?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let rk = client.native_ptr();
    // SAFETY: `rk` is a live client handle for the duration of this call (borrowed from
    // `client`); each constructor's result is owned by a guard that destroys it.
    unsafe {
        let queue = Owned {
            ptr: rd::rd_kafka_queue_new(rk),
            destroy: rd::rd_kafka_queue_destroy,
        };
        let options = Owned {
            ptr: rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            ),
            destroy: rd::rd_kafka_AdminOptions_destroy,
        };
        if options.ptr.is_null() {
            return Err("librdkafka could not allocate the DescribeTopics options".into());
        }
        let mut errstr = [0 as c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options.ptr,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        rd::rd_kafka_AdminOptions_set_broker(
            options.ptr,
            broker,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let mut names = [name.as_ptr()];
        let topics = Owned {
            ptr: rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1),
            destroy: rd::rd_kafka_TopicCollection_destroy,
        };
        if queue.ptr.is_null() || topics.ptr.is_null() {
            return Err("librdkafka could not allocate the DescribeTopics request".into());
        }
        rd::rd_kafka_DescribeTopics(rk, topics.ptr, options.ptr, queue.ptr);
        // The admin call answers with exactly one event on its queue (an error event when the
        // request timed out), so one poll a little longer than the request timeout suffices.
        let event = Owned {
            ptr: rd::rd_kafka_queue_poll(queue.ptr, timeout_ms.saturating_add(1000)),
            destroy: rd::rd_kafka_event_destroy,
        };
        if event.ptr.is_null() {
            return Err(format!("no answer to DescribeTopics within {timeout:?}"));
        }
        let code = rd::rd_kafka_event_error(event.ptr);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(format!(
                "DescribeTopics failed: {}",
                message(rd::rd_kafka_event_error_string(event.ptr))
                    .unwrap_or_else(|| RDKafkaErrorCode::from(code).to_string())
            ));
        }
        let result = rd::rd_kafka_event_DescribeTopics_result(event.ptr);
        if result.is_null() {
            return Err("DescribeTopics answered with another event".into());
        }
        let mut count = 0usize;
        let descriptions = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        for i in 0..count {
            let description = *descriptions.add(i);
            if message(rd::rd_kafka_TopicDescription_name(description)).as_deref() != Some(topic) {
                continue;
            }
            let error = rd::rd_kafka_TopicDescription_error(description);
            if !error.is_null()
                && rd::rd_kafka_error_code(error)
                    != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            {
                return Err(format!(
                    "describing topic {topic}: {}",
                    message(rd::rd_kafka_error_string(error)).unwrap_or_default()
                ));
            }
            let id = rd::rd_kafka_TopicDescription_topic_id(description);
            if id.is_null()
                || (rd::rd_kafka_Uuid_most_significant_bits(id) == 0
                    && rd::rd_kafka_Uuid_least_significant_bits(id) == 0)
            {
                return Ok(None);
            }
            return Ok(message(rd::rd_kafka_Uuid_base64str(id)));
        }
        Err(format!("DescribeTopics did not describe topic {topic}"))
    }
}

/// Copies a C string owned by librdkafka (`None` for a null pointer).
///
/// # Safety
/// `text` is null or points to a NUL-terminated string that lives until this returns.
unsafe fn message(text: *const c_char) -> Option<String> {
    if text.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated, per this function's contract.
    Some(
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned(),
    )
}
