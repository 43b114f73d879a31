import Logging
import NIOCore

extension NATSClient {
    // MARK: Publish

    /// Publishes `payload` on `subject`. Returns once the message is queued for the socket
    /// (or buffered while reconnecting); use `flush()` to know the server has it.
    public func publish(_ subject: String, payload: some Collection<UInt8> = [], headers: NATSHeaders? = nil, replyTo: String? = nil) async throws {
        if try publishWithoutWaiting(subject, payload: payload, headers: headers, replyTo: replyTo) {
            await waitForBackpressure()
        }
    }

    public func publish(_ subject: String, payload: ByteBuffer, headers: NATSHeaders? = nil, replyTo: String? = nil) async throws {
        try await publish(subject, payload: payload.readableBytesView, headers: headers, replyTo: replyTo)
    }

    /// Queues a publish without ever suspending; returns true when the caller should slow
    /// down (too much is queued). Safe to call from any thread.
    @discardableResult
    public func publishWithoutWaiting(_ subject: String, payload: some Collection<UInt8>, headers: NATSHeaders? = nil, replyTo: String? = nil) throws(NATSError) -> Bool {
        try NATSClientCommand.validateToken(subject, what: "subject")
        if let replyTo { try NATSClientCommand.validateToken(replyTo, what: "reply subject") }
        if let headers { try headers.validate() }
        let size = payload.count
        let (channel, overHighWater) = try state.withLock { s throws(NATSError) in
            try Self.checkPayloadSize(size, s)
            return try enqueueLocked(&s, size: size + subject.utf8.count + 64) { buffer in
                NATSClientCommand.writePublish(subject: subject, replyTo: replyTo, headers: headers, payload: payload, into: &buffer)
            }
        }
        if let channel { channel.eventLoop.execute { self.flushPending(channel: channel) } }
        return overHighWater
    }

    // MARK: Flush

    /// Waits until the server has processed everything sent so far (a PING/PONG round trip).
    public func flush(timeout: Duration? = nil) async throws {
        let limit = timeout ?? configuration.requestTimeout
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.pingPong() }
            group.addTask {
                try await Task.sleep(for: limit)
                throw NATSError(.timeout, "The NATS server did not answer a PING within \(limit).")
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    private func pingPong() async throws {
        let id = requestIDs.wrappingAdd(1, ordering: .relaxed).oldValue
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let result: Result<(any Channel)?, any Error> = state.withLock { s in
                    // Checked under the lock, so a cancellation either happened before
                    // (refused here) or finds the waiter below.
                    if Task.isCancelled { return .failure(CancellationError()) }
                    guard s.status == .connected, let channel = s.channel else {
                        return .failure(NATSError(.connectionLost, "Not connected to NATS; cannot flush now."))
                    }
                    s.pongWaiters.append(PongWaiter(id: id, continuation: continuation))
                    NATSClientCommand.writePing(into: &s.outBuffer)
                    if s.flushScheduled { return .success(nil) }
                    s.flushScheduled = true
                    return .success(channel)
                }
                switch result {
                case .failure(let error): continuation.resume(throwing: error)
                case .success(let channel):
                    if let channel { channel.eventLoop.execute { self.flushPending(channel: channel) } }
                }
            }
        } onCancel: {
            // The PING stays in flight, so its slot stays in the queue; only the waiter goes.
            let continuation: CheckedContinuation<Void, any Error>? = self.state.withLock { s in
                guard let index = s.pongWaiters.firstIndex(where: { $0.id == id && $0.continuation != nil }) else { return nil }
                defer { s.pongWaiters[index].continuation = nil }
                return s.pongWaiters[index].continuation
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    // MARK: Subscribe

    /// Subscribes to `subject` (wildcards allowed), optionally in a queue group so that each
    /// message goes to one member only. When the server is connected, returns after it has
    /// processed the subscription.
    public func subscribe(to subject: String, queue: String? = nil, bufferSize: Int? = nil) async throws -> NATSSubscription {
        let subscription = try subscribeWithoutFlush(to: subject, queue: queue, bufferSize: bufferSize)
        if isConnected { try? await flush() }
        return subscription
    }

    func subscribeWithoutFlush(to subject: String, queue: String? = nil, bufferSize: Int? = nil) throws(NATSError) -> NATSSubscription {
        try NATSClientCommand.validateToken(subject, what: "subject")
        if let queue { try NATSClientCommand.validateToken(queue, what: "queue group") }
        let (stream, continuation) = AsyncStream.makeStream(of: NATSMessage.self, bufferingPolicy: .bufferingOldest(bufferSize ?? configuration.subscriptionBufferSize))
        let backlog = SubscriptionBacklog(limit: configuration.subscriptionBufferBytes)
        let sid: UInt64 = try state.withLock { s throws(NATSError) in
            guard s.status != .closed, s.status != .draining else {
                throw NATSError(.closed, "The NATS client is closed; cannot subscribe.")
            }
            let sid = s.nextSID
            s.nextSID += 1
            s.subscriptions[sid] = SubscriptionEntry(subject: subject, queue: queue, continuation: continuation, backlog: backlog)
            return sid
        }
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { try? self?.unsubscribe(sid: sid, after: nil) }
        }
        do {
            try enqueue(size: 0) { buffer in
                NATSClientCommand.writeSubscribe(subject: subject, queue: queue, sid: sid, into: &buffer)
            }
        } catch let error where error.code == .reconnectBufferFull {
            // The subscription is restored on reconnect anyway.
        }
        return NATSSubscription(subject: subject, queue: queue, sid: sid, stream: stream, backlog: backlog, client: self)
    }

    func unsubscribe(sid: UInt64, after max: Int?) throws(NATSError) {
        let finished: AsyncStream<NATSMessage>.Continuation? = state.withLock { s in
            guard var entry = s.subscriptions[sid] else { return nil }
            if let max, max > entry.delivered {
                entry.max = max
                s.subscriptions[sid] = entry
                return nil
            }
            s.subscriptions.removeValue(forKey: sid)
            return entry.continuation
        }
        let remaining: Int? = max
        _ = try? enqueue(size: 0) { buffer in
            NATSClientCommand.writeUnsubscribe(sid: sid, max: remaining, into: &buffer)
        }
        finished?.finish()
    }

    func droppedCount(sid: UInt64) -> Int {
        state.withLock { $0.subscriptions[sid]?.dropped ?? 0 }
    }

    // MARK: Request

    /// Sends a request and waits for the first reply. Replies arrive on one shared inbox
    /// subscription. Throws `.noResponders` when nobody listens, `.timeout` after `timeout`.
    public func request(_ subject: String, payload: some Collection<UInt8> = [], headers: NATSHeaders? = nil, timeout: Duration? = nil) async throws -> NATSMessage {
        try NATSClientCommand.validateToken(subject, what: "subject")
        if let headers { try headers.validate() }
        let limit = timeout ?? configuration.requestTimeout
        let id = requestIDs.wrappingAdd(1, ordering: .relaxed).oldValue
        let replySubject = "\(inboxPrefix).\(id)"
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<NATSMessage, any Error>) in
                let waiter = RequestWaiter(continuation: continuation, deadline: .now() + .nanoseconds(limit.timeAmount), subject: subject, timeout: limit)
                // One lock: register the waiter, subscribe the inbox on first use, queue the PUB.
                let result: Result<((any Channel)?, Bool), NATSError> = state.withLock { s in
                    do throws(NATSError) {
                        try Self.checkPayloadSize(payload.count, s)
                        var schedule: (any Channel)?
                        if s.inboxSID == nil {
                            let sid = s.nextSID
                            s.nextSID += 1
                            s.inboxSID = sid
                            let inbox = "\(inboxPrefix).*"
                            // If this cannot be queued now, the inbox is subscribed on reconnect.
                            schedule = (try? enqueueLocked(&s, size: 0) { NATSClientCommand.writeSubscribe(subject: inbox, queue: nil, sid: sid, into: &$0) })?.0 ?? nil
                        }
                        let (channel, _) = try enqueueLocked(&s, size: payload.count + subject.utf8.count + 64) { buffer in
                            NATSClientCommand.writePublish(subject: subject, replyTo: replySubject, headers: headers, payload: payload, into: &buffer)
                        }
                        s.pendingRequests[id] = waiter
                        let startSweeper = s.requestSweeper == nil
                        return .success((schedule ?? channel, startSweeper))
                    } catch {
                        return .failure(error)
                    }
                }
                switch result {
                case .failure(let error):
                    continuation.resume(throwing: error)
                case .success(let (channel, startSweeper)):
                    if startSweeper { startRequestSweeper() }
                    if let channel { channel.eventLoop.execute { self.flushPending(channel: channel) } }
                }
            }
        } onCancel: {
            self.failRequest(id, CancellationError())
        }
    }

    /// Checks pending requests for expired deadlines every 50 ms.
    private func startRequestSweeper() {
        let task = eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(50), delay: .milliseconds(50)) { [weak self] _ in
            self?.expireRequests()
        }
        let keep = state.withLock { s in
            guard s.requestSweeper == nil, s.status != .closed else { return false }
            s.requestSweeper = task
            return true
        }
        if !keep { task.cancel() }
    }

    private func expireRequests() {
        let now = NIODeadline.now()
        let expired: [RequestWaiter] = state.withLock { s in
            let ids = s.pendingRequests.filter { $0.value.deadline <= now }.map(\.key)
            return ids.compactMap { s.pendingRequests.removeValue(forKey: $0) }
        }
        for waiter in expired {
            waiter.continuation.resume(throwing: NATSError(.timeout, "No reply on '\(waiter.subject)' within \(waiter.timeout)."))
        }
    }

    func failRequest(_ id: UInt64, _ error: any Error) {
        let waiter = state.withLock { $0.pendingRequests.removeValue(forKey: id) }
        guard let waiter else { return }
        waiter.continuation.resume(throwing: error)
    }

    // MARK: Drain and close

    /// Graceful shutdown: unsubscribes everything, waits until the server has delivered what
    /// it had for us (consumers still read buffered messages), flushes publishes, closes.
    public func drain() async {
        let sids: [UInt64] = state.withLock { s in
            guard s.status != .closed, s.status != .draining else { return [] }
            return Array(s.subscriptions.keys)
        }
        for sid in sids {
            _ = try? enqueue(size: 0) { buffer in NATSClientCommand.writeUnsubscribe(sid: sid, max: nil, into: &buffer) }
        }
        if isConnected { try? await flush(timeout: .seconds(5)) }
        let continuations: [AsyncStream<NATSMessage>.Continuation] = state.withLock { s in
            let c = s.subscriptions.values.map(\.continuation)
            s.subscriptions.removeAll()
            if s.status != .closed { s.status = .draining }
            return c
        }
        for c in continuations { c.finish() }
        await close()
    }

    /// Closes the connection now. Subscriptions end, pending requests fail with `.closed`.
    public func close() async {
        let (channel, task, subs, requests, pongs, events, backpressure) = state.withLock { s in
            let result = (s.channel, s.loopTask, Array(s.subscriptions.values), Array(s.pendingRequests.values), s.pongWaiters, Array(s.eventContinuations.values), s.backpressureWaiters)
            s.requestSweeper?.cancel()
            s.requestSweeper = nil
            s.status = .closed
            s.channel = nil
            s.loopTask = nil
            s.subscriptions.removeAll()
            s.pendingRequests.removeAll()
            s.pongWaiters.removeAll()
            s.eventContinuations.removeAll()
            s.backpressureWaiters.removeAll()
            return result
        }
        task?.cancel()
        if let channel {
            // Let queued bytes go out before closing.
            let pending: ByteBuffer? = state.withLock { s in
                guard s.outBuffer.readableBytes > 0 else { return nil }
                let b = s.outBuffer
                s.outBuffer.clear()
                return b
            }
            if let pending { try? await channel.writeAndFlush(pending).get() }
            try? await channel.close()
        }
        let closed = NATSError(.closed, "The NATS client was closed.")
        for entry in subs { entry.continuation.finish() }
        for r in requests { r.continuation.resume(throwing: closed) }
        for p in pongs { p.continuation?.resume(throwing: closed) }
        for b in backpressure { b.resume() }
        for e in events { e.yield(.closed); e.finish() }
        logger.debug("nats.closed")
    }
}

/// Runs `body` with a connected client and closes it afterwards, also when `body` throws.
public func withNATSConnection<T: Sendable>(
    _ configuration: NATSClientConfiguration, logger: Logger = Logger(label: "plane.nats"),
    _ body: (NATSClient) async throws -> T
) async throws -> T {
    let client = try NATSClient(configuration: configuration, logger: logger)
    do {
        try await client.connect()
        let result = try await body(client)
        await client.drain()
        return result
    } catch {
        await client.close()
        throw error
    }
}
