import Foundation
import Testing
@testable import PlaneACME

struct RenewalPolicyTests {
    let start = Date(timeIntervalSince1970: 1_800_000_000)
    var end: Date { start.addingTimeInterval(90 * 86_400) }  // a 90-day certificate

    @Test func renewalIsDueWhenAThirdOfTheLifetimeRemains() {
        let policy = RenewalPolicy()
        #expect(policy.renewalDate(notBefore: start, notAfter: end) == start.addingTimeInterval(60 * 86_400))
        #expect(!policy.isDue(notBefore: start, notAfter: end, now: start.addingTimeInterval(59 * 86_400)))
        #expect(policy.isDue(notBefore: start, notAfter: end, now: start.addingTimeInterval(60 * 86_400)))
        #expect(policy.isDue(notBefore: start, notAfter: end, now: end.addingTimeInterval(1)))
        let half = RenewalPolicy(renewWhenRemaining: 0.5)
        #expect(half.renewalDate(notBefore: start, notAfter: end) == start.addingTimeInterval(45 * 86_400))
    }

    @Test func theNextCheckIsHourlyOrAtTheRenewalDate() {
        let policy = RenewalPolicy()
        #expect(policy.nextCheck(notBefore: start, notAfter: end, now: start) == .seconds(3600))
        let due = policy.renewalDate(notBefore: start, notAfter: end)
        #expect(policy.nextCheck(notBefore: start, notAfter: end, now: due.addingTimeInterval(-90)) == .seconds(90))
        // Never a busy loop.
        #expect(policy.nextCheck(notBefore: start, notAfter: end, now: due.addingTimeInterval(10)) == .seconds(1))
    }

    @Test func failuresBackOffWithJitterUpToTheCap() {
        let policy = RenewalPolicy(retryInterval: .seconds(10))
        #expect(policy.retryDelay(failures: 1, hasUsableCertificate: true, jitter: 0.5) == .seconds(10))
        #expect(policy.retryDelay(failures: 2, hasUsableCertificate: true, jitter: 0.5) == .seconds(20))
        #expect(policy.retryDelay(failures: 4, hasUsableCertificate: true, jitter: 0.5) == .seconds(80))
        #expect(policy.retryDelay(failures: 1, hasUsableCertificate: true, jitter: 0) == .seconds(8))
        #expect(policy.retryDelay(failures: 1, hasUsableCertificate: true, jitter: 1) == .seconds(12))
        // Capped at the check interval, or at 5 minutes while there is no certificate to serve.
        #expect(policy.retryDelay(failures: 30, hasUsableCertificate: true, jitter: 0.5) == .seconds(3600))
        #expect(policy.retryDelay(failures: 30, hasUsableCertificate: false, jitter: 0.5) == .seconds(300))
        #expect(policy.retryDelay(failures: 1000, hasUsableCertificate: false, jitter: 0.5) == .seconds(300))
    }
}
