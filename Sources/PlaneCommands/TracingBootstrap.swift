import Logging
import OTel
import PlaneMessaging
import ServiceLifecycle
import Synchronization
import Tracing

/// Turns `[tracing]` into the process's tracer (issue 16): swift-otel's OTLP/HTTP span
/// exporter behind a batch processor, made swift-distributed-tracing's instrument. Only
/// traces: logs and metrics have their own paths (`[log_forwarding]`, `/metrics`). The
/// returned service sends the batches and flushes them when it stops. Once per process.
enum TracingBootstrap {
    struct AlreadyStarted: Error, CustomStringConvertible {
        var description: String { "tracing is already set up in this process" }
    }

    private static let started = Mutex(false)

    static func start(_ tracing: TracingConfiguration, serviceName: String) throws -> any Service {
        var configuration = OTel.Configuration.default
        configuration.serviceName = tracing.serviceName ?? serviceName
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.enabled = true
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.endpoint = tracing.endpoint
        configuration.traces.otlpExporter.protocol = tracing.exportProtocol == .httpJSON ? .httpJSON : .httpProtobuf
        configuration.traces.batchSpanProcessor.scheduleDelay = tracing.exportDelay
        configuration.diagnosticLogger = .custom(Logger(label: "plane.tracing"))
        configuration.diagnosticLogLevel = .warning
        let alreadyStarted = started.withLock { started in
            defer { started = true }
            return started
        }
        guard !alreadyStarted else { throw AlreadyStarted() }
        let (tracer, service) = try OTel.makeTracingBackend(configuration: configuration)
        InstrumentationSystem.bootstrap(tracer)
        Logger(label: "plane.tracing").info("tracing.started", metadata: ["otel.endpoint": "\(tracing.endpoint)", "otel.protocol": "\(tracing.exportProtocol.rawValue)"])
        return service
    }
}
