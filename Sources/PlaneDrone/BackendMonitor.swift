import ContainerRuntime
import Logging
import PlaneCore
import PlaneMessaging

/// While a backend is `Starting` or `Ready`: its log lines on `backend.{id}.log` (each
/// once, also across restarts of the monitor or the drone), a stats sample on
/// `backend.{id}.stats` every 10 s, and its DNS A record on `cluster.{c}.dns.A` at once
/// and every 50 s. When the backend ends, the log follower outlives the rest until the
/// process's output is read to its end (`stopKeepingLogs`, `finishLogs(within:)`), so the
/// last lines a backend prints (a crash message, its shutdown) are published too.
final class BackendMonitor: Sendable {
    private let logs: Task<Void, Never>
    private let positionRecorder: Task<Void, Never>
    private let tasks: [Task<Void, Never>]

    init(backend: BackendID, context: AgentContext, logsSince: Timestamp?) {
        let messenger = context.messenger
        let runtime = context.runtime
        let logger = context.logger
        let store = context.store
        // The position of the last published line is stored beside the publishing, not
        // before the next line: a store write waits for the disk (synchronous = FULL), and
        // under load that took seconds a line. Writes coalesce to the newest position.
        let (positions, recorder) = AsyncStream.makeStream(of: Timestamp.self, bufferingPolicy: .bufferingNewest(1))
        positionRecorder = Task {
            for await time in positions { try? await store.recordLogPosition(backend, time: time) }
        }
        let configuration = context.configuration
        logs = Task {
            defer { recorder.finish() }
            var last = logsSince
            var limiter = LogVolumeLimiter(maxLineBytes: configuration.maxLogLineBytes, maxBytesPerMinute: configuration.maxLogBytesPerMinute)
            func reportDrops(_ dropped: (lines: Int, bytes: Int)) async {
                if let hits = LimitCounters.shared.record(LogVolumeLimiter.maxBytesPerMinuteKey) {
                    logger.warning("limit.exceeded", metadata: ["plane.limit": "\(LogVolumeLimiter.maxBytesPerMinuteKey)", "plane.limit_hits": "\(hits)",
                                                               "plane.backend": "\(backend)", "log.dropped_lines": "\(dropped.lines)", "log.dropped_bytes": "\(dropped.bytes)"])
                }
                let notice = LogVolumeLimiter.dropNotice(lines: dropped.lines, bytes: dropped.bytes, limit: limiter.maxBytesPerMinute)
                try? await messenger.publish(PlaneSubjects.backendLog(backend), DroneLogMessage(backendID: backend, kind: .stderr, line: notice, time: .now()))
            }
            do {
                for try await line in runtime.logs(of: backend, follow: true) {
                    if let time = line.time, let previous = last, time <= previous { continue }
                    let decision = limiter.admit(line.text, at: .now)
                    if let dropped = decision.droppedBefore { await reportDrops(dropped) }
                    if decision.cut, let hits = LimitCounters.shared.record(LogVolumeLimiter.maxLineBytesKey) {
                        logger.notice("limit.exceeded", metadata: ["plane.limit": "\(LogVolumeLimiter.maxLineBytesKey)", "plane.limit_hits": "\(hits)", "plane.backend": "\(backend)"])
                    }
                    if let text = decision.text {
                        let message = DroneLogMessage(backendID: backend, kind: line.stream == .stdout ? .stdout : .stderr, line: text, time: line.time ?? .now())
                        try? await messenger.publish(PlaneSubjects.backendLog(backend), message)
                    }
                    if let time = line.time {
                        last = time
                        recorder.yield(time)
                    }
                }
            } catch is CancellationError {
            } catch {
                logger.debug("monitor.logs_ended", metadata: ["plane.backend": "\(backend)", "error": "\(error)"])
            }
            if let dropped = limiter.pendingDrops { await reportDrops(dropped) }
        }
        var tasks: [Task<Void, Never>] = []
        tasks.append(Task {
            // `plane logs`: the recent output on request, from the runtime's own log.
            let subscription: PlaneSubscription<BackendLogHistoryRequest, [DroneLogMessage]>
            do { subscription = try await messenger.subscribe(PlaneSubjects.backendLogHistory(backend)) } catch {
                logger.warning("monitor.log_history_unavailable", metadata: ["plane.backend": "\(backend)", "error": "\(error)"])
                return
            }
            await withTaskCancellationHandler {
                for await delivery in subscription {
                    let wanted = (try? delivery.message.get().lines).map { min(max($0, 1), 10_000) } ?? 1000
                    let lines = await Self.recentOutput(of: backend, runtime: runtime, lines: wanted)
                    _ = try? await delivery.respond(lines)
                }
            } onCancel: {
                try? subscription.unsubscribe()
            }
        })
        if runtime.descriptor.capabilities.stats {
            let interval = context.statsInterval
            let routes = context.routes
            tasks.append(Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    if Task.isCancelled { return }
                    guard let sample = try? await runtime.stats(of: backend) else { continue }
                    let idle = routes.idleTime(of: backend).map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 }
                    let message = BackendStatsMessage(backendID: backend, cpuUsePercent: sample.cpuPercent, memUsePercent: sample.memoryPercent,
                                                      idleSeconds: idle.map { ($0 * 10).rounded() / 10 })
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

    /// The newest `lines` lines of output, oldest first, at most 512 KiB of text.
    static func recentOutput(of backend: BackendID, runtime: any ContainerRuntime, lines: Int) async -> [DroneLogMessage] {
        var recent: [DroneLogMessage] = []
        do {
            for try await line in runtime.logs(of: backend, follow: false) {
                recent.append(DroneLogMessage(backendID: backend, kind: line.stream == .stdout ? .stdout : .stderr, line: line.text, time: line.time ?? .now()))
                if recent.count >= 2 * lines { recent.removeFirst(recent.count - lines) }
            }
        } catch {
            // What was read so far is still worth sending.
        }
        if recent.count > lines { recent.removeFirst(recent.count - lines) }
        var bytes = 0
        var start = recent.count
        while start > 0, bytes + recent[start - 1].text.utf8.count + 64 <= 512 << 10 {
            start -= 1
            bytes += recent[start].text.utf8.count + 64
        }
        return Array(recent[start...])
    }

    /// Ends everything at once (the agent stops and leaves the backend running).
    func stop() {
        logs.cancel()
        for task in tasks { task.cancel() }
    }

    /// Returns once the position of the last published line is stored (after `stop`), so
    /// a drone started next does not publish it again.
    func positionRecorded() async {
        await positionRecorder.value
    }

    /// Ends stats, DNS and log history; the log follower goes on until the output ends.
    func stopKeepingLogs() {
        for task in tasks { task.cancel() }
    }

    /// Waits until the log follower has read the output to its end (the process exited),
    /// at most `limit`, then ends it.
    func finishLogs(within limit: Duration) async {
        let logs = logs
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await logs.value }
            group.addTask { try? await Task.sleep(for: limit) }
            await group.next()
            logs.cancel()
            group.cancelAll()
        }
    }
}
