import PlaneCore

/// The drone's side of its lease, as a pure state machine: grants and clock ticks in,
/// actions on the lock-holding backends out.
///
/// The lease runs from the moment the drone *sent* its last renewal that a controller
/// granted, so it never outlasts what any controller can have seen. `soft` after that, the
/// lock-holding backends are asked to stop (SIGTERM, killed when `hard` is reached); at
/// `hard` whatever still runs is killed. Controllers reassign a lock only after
/// `lock_reassign_after` (longer than `hard` plus a margin) without seeing a renewal
/// (docs/architecture.md, "Locks across partitions").
public struct DroneLease: Sendable, Hashable {
    public struct Timing: Sendable, Hashable {
        /// How often the drone renews.
        public var renewInterval: Duration
        public var soft: Duration
        public var hard: Duration

        public init(renewInterval: Duration = .seconds(2), soft: Duration = .seconds(10), hard: Duration = .seconds(20)) {
            self.renewInterval = renewInterval
            self.soft = soft
            self.hard = hard
        }

        /// Why these values cannot work, or nil: renewals must come several times within
        /// `soft`, and `soft` must come before `hard`.
        public var problem: String? {
            if renewInterval <= .zero { return "lease_renew_secs must be positive" }
            if soft <= renewInterval { return "lease_soft_secs must be longer than lease_renew_secs" }
            if hard <= soft { return "lease_hard_secs must be longer than lease_soft_secs" }
            return nil
        }
    }

    public enum Phase: Sendable, Hashable {
        /// Never granted: no lock-holding backend may start.
        case none
        case valid
        /// Past `soft`: lock-holding backends are stopping.
        case soft
        /// Past `hard`.
        case expired
    }

    public enum Action: Sendable, Hashable {
        /// SIGTERM the lock-holding backends now; they are killed once `grace` has passed.
        case stopLockHolders(grace: Duration)
        /// Kill whatever lock-holding backend still runs.
        case killLockHolders
        /// A controller revoked the lease: every lock-holding backend accepted under another
        /// epoch than `epoch` stops at once.
        case fenceLockHolders(epoch: UInt64)
    }

    public let timing: Timing
    public private(set) var epoch: UInt64?
    /// When the last granted renewal was sent.
    public private(set) var grantedAt: ContinuousClock.Instant?
    public private(set) var phase: Phase

    /// `epoch` and `grantedAt` from the drone's store after a restart (nil: never granted).
    public init(timing: Timing, epoch: UInt64? = nil, grantedAt: ContinuousClock.Instant? = nil) {
        self.timing = timing
        self.epoch = epoch
        self.grantedAt = grantedAt
        phase = grantedAt == nil ? .none : .valid
    }

    /// A controller granted the renewal sent at `sentAt` under `epoch`.
    public mutating func granted(epoch granted: UInt64, sentAt: ContinuousClock.Instant, now: ContinuousClock.Instant) -> [Action] {
        var actions: [Action] = []
        if let epoch, epoch != granted { actions.append(.fenceLockHolders(epoch: granted)) }
        epoch = granted
        if let grantedAt, grantedAt > sentAt {
            // An older renewal answered late: the newer grant stands.
        } else {
            grantedAt = sentAt
        }
        return actions + tick(now: now)
    }

    public mutating func tick(now: ContinuousClock.Instant) -> [Action] {
        guard let grantedAt else { return [] }
        let elapsed = now - grantedAt
        if elapsed >= timing.hard {
            guard phase != .expired else { return [] }
            phase = .expired
            return [.killLockHolders]
        }
        if elapsed >= timing.soft {
            guard phase == .valid || phase == .none else { return [] }
            phase = .soft
            return [.stopLockHolders(grace: timing.hard - elapsed)]
        }
        phase = .valid
        return []
    }

    /// Whether a lock-holding backend may start now: the lease is valid and not about to
    /// lapse before the next renewal could extend it.
    public func allowsLockHolders(at now: ContinuousClock.Instant) -> Bool {
        guard let grantedAt, phase == .valid else { return false }
        return now - grantedAt < timing.soft - timing.renewInterval
    }

    /// When the lease runs out (`hard`), if it was ever granted.
    public var hardDeadline: ContinuousClock.Instant? { grantedAt.map { $0 + timing.hard } }
}
