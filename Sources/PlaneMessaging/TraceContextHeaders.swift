import Instrumentation
import NATS
import ServiceContextModule

/// Trace context in NATS message headers (issue 16): a request carries the sender's span
/// (W3C `traceparent` and `tracestate`, as the configured instrument writes them) and the
/// receiver continues the trace from it. Without a configured tracer (the default) the
/// instrument is a no-op: nothing is written, and a message carries no headers.
public enum TraceContextHeaders {
    /// The headers for a message sent from `context` (nil: the instrument wrote nothing).
    public static func headers(for context: ServiceContext?) -> NATSHeaders? {
        guard let context else { return nil }
        var headers = NATSHeaders()
        InstrumentationSystem.instrument.inject(context, into: &headers, using: Injector())
        return headers.isEmpty ? nil : headers
    }

    /// The context a received message's headers carry (top level without any). The values
    /// are the sender's, so anything: the instrument's parser takes what it understands
    /// and ignores the rest.
    public static func context(from headers: NATSHeaders?) -> ServiceContext {
        var context = ServiceContext.topLevel
        if let headers, !headers.isEmpty {
            InstrumentationSystem.instrument.extract(headers, into: &context, using: Extractor())
        }
        return context
    }

    struct Injector: Instrumentation.Injector {
        func inject(_ value: String, forKey key: String, into carrier: inout NATSHeaders) {
            carrier.append(key, value)
        }
    }

    struct Extractor: Instrumentation.Extractor {
        func extract(key: String, from carrier: NATSHeaders) -> String? {
            carrier[key]
        }
    }
}
