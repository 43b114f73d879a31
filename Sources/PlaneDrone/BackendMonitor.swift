import ContainerRuntime
import Logging
import PlaneCore
import PlaneMessaging

/// While a backend is `Starting` or `Ready`: its log lines on `backend.{id}.log` (each
/// once, also across restarts of the monitor or the drone), a stats sample on
/// `backend.{id}.stats` every 10 s, and its DNS A record on `cluster.{c}.dns.A` at once
/// and every 50 s.
final class BackendMonitor: Sendable {
    private let tasks: [Task<Void, Never>]

    init(backend: BackendID, context: AgentContext, logsSince: Timestamp?) {
        let messenger = context.messenger
        let runtime = context.runtime
        let logger = context.logger
        let store = context.store
        var tasks: [Task<Void, Never>] = []
        tasks.append(Task {
            var last = logsSince
            do {
                for try await line in runtime.logs(of: backend, follow: true) {
                    if let time = line.time, let previous = last, time <= previous { continue }
                    let message = DroneLogMessage(backendID: backend, kind: line.stream == .stdout ? .stdout : .stderr, text: line.text)
                    try? await messenger.publish(PlaneSubjects.backendLog(backend), message)
                    if let time = line.time {
                        last = time
                        try? await store.recordLogPosition(backend, time: time)
                    }
                }
            } catch is CancellationError {
            } catch {
                logger.debug("monitor.logs_ended", metadata: ["plane.backend": "\(backend)", "error": "\(error)"])
            }
        })
        if runtime.descriptor.capabilities.stats {
            let interval = context.statsInterval
            tasks.append(Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    if Task.isCancelled { return }
                    guard let sample = try? await runtime.stats(of: backend) else { continue }
                    let message = BackendStatsMessage(backendID: backend, cpuUsePercent: sample.cpuPercent, memUsePercent: sample.memoryPercent)
                    try? await messenger.publish(PlaneSubjects.backendStats(backend), message)
                }
            })
        }
        let record = SetDnsRecord(cluster: context.cluster, kind: .a, name: backend.rawValue, value: context.publicIP)
        let cluster = context.cluster
        let dnsInterval = context.dnsInterval
        tasks.append(Task {
            while !Task.isCancelled {
                do {
                    try await messenger.publish(PlaneSubjects.dns(cluster, .a), record)
                } catch {
                    logger.debug("monitor.dns_publish_failed", metadata: ["plane.backend": "\(backend)", "error": "\(error)"])
                }
                try? await Task.sleep(for: dnsInterval)
            }
        })
        self.tasks = tasks
    }

    func stop() {
        for task in tasks { task.cancel() }
    }
}
