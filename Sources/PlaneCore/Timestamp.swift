#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A UTC instant with nanosecond precision, written as RFC 3339 the way chrono 0.4 does
/// (`2023-02-18T17:03:14.518207339Z`; the fraction omitted when zero, else 3, 6 or 9 digits).
///
/// `Foundation.Date` is a `Double` and loses nanoseconds, so Plane keeps seconds and
/// nanoseconds apart: a `time` relayed from a drone to JetStream comes out as it came in.
/// Input may use any RFC 3339 offset; it is converted to UTC.
public struct Timestamp: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    public var secondsSinceEpoch: Int64
    /// 0..<1_000_000_000.
    public var nanoseconds: UInt32

    public init(secondsSinceEpoch: Int64, nanoseconds: UInt32 = 0) {
        precondition(nanoseconds < 1_000_000_000)
        self.secondsSinceEpoch = secondsSinceEpoch
        self.nanoseconds = nanoseconds
    }

    /// The current wall-clock time.
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(secondsSinceEpoch: Int64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec))
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        (lhs.secondsSinceEpoch, lhs.nanoseconds) < (rhs.secondsSinceEpoch, rhs.nanoseconds)
    }

    /// Nanoseconds since the epoch (exact from 1677 to 2262; a peer's timestamp beyond
    /// that, up to the year 9999 that RFC 3339 allows, saturates to `Int64.min`/`.max`).
    public var nanosecondsSinceEpoch: Int64 {
        let (product, overflow) = secondsSinceEpoch.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return secondsSinceEpoch < 0 ? .min : .max }
        let (sum, overflowed) = product.addingReportingOverflow(Int64(nanoseconds))
        return overflowed ? .max : sum
    }

    /// `self - earlier`, exact for any two timestamps (negative when `earlier` is later):
    /// ages of peers' timestamps are computed with this, never by subtracting nanoseconds,
    /// which overflows for far-apart times.
    public func duration(since earlier: Timestamp) -> Duration {
        .seconds(secondsSinceEpoch) - .seconds(earlier.secondsSinceEpoch) + .nanoseconds(Int64(nanoseconds) - Int64(earlier.nanoseconds))
    }

    /// The inverse of `nanosecondsSinceEpoch` (also before 1970).
    public init(nanosecondsSinceEpoch value: Int64) {
        var seconds = value / 1_000_000_000
        var remainder = value % 1_000_000_000
        if remainder < 0 {
            seconds -= 1
            remainder += 1_000_000_000
        }
        self.init(secondsSinceEpoch: seconds, nanoseconds: UInt32(remainder))
    }

    // MARK: Formatting

    /// RFC 3339 in chrono's form, e.g. `2023-02-18T17:03:14.518207339Z`.
    public var rfc3339: String { format(dateTimeSeparator: "T", suffix: "Z") }

    /// chrono's `Display` form, used by the CLI: `2023-02-18 17:03:15.002113873 UTC`.
    public var displayString: String { format(dateTimeSeparator: " ", suffix: " UTC") }

    public var description: String { rfc3339 }

    private func format(dateTimeSeparator: String, suffix: String) -> String {
        let days = secondsSinceEpoch >= 0 ? secondsSinceEpoch / 86_400 : (secondsSinceEpoch - 86_399) / 86_400
        let secondOfDay = secondsSinceEpoch - days * 86_400
        let (year, month, day) = Self.civil(fromDays: days)
        var out = Self.pad(year, 4) + "-" + Self.pad(month, 2) + "-" + Self.pad(day, 2)
        out += dateTimeSeparator
        out += Self.pad(secondOfDay / 3600, 2) + ":" + Self.pad(secondOfDay % 3600 / 60, 2) + ":" + Self.pad(secondOfDay % 60, 2)
        if nanoseconds != 0 {
            if nanoseconds % 1_000_000 == 0 {
                out += "." + Self.pad(Int64(nanoseconds / 1_000_000), 3)
            } else if nanoseconds % 1_000 == 0 {
                out += "." + Self.pad(Int64(nanoseconds / 1_000), 6)
            } else {
                out += "." + Self.pad(Int64(nanoseconds), 9)
            }
        }
        return out + suffix
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }

    // MARK: Parsing

    /// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`), up to 9 fraction digits.
    public init(rfc3339 text: String) throws(PlaneCoreError) {
        func fail(_ why: String) -> PlaneCoreError {
            PlaneCoreError(.invalidTimestamp, "Timestamp \(text.quotedForError) is invalid: \(why); use RFC 3339 such as '2023-02-18T17:03:14.518207339Z'.")
        }
        let b = Array(text.utf8)
        var i = 0
        func number(_ width: Int) throws(PlaneCoreError) -> Int64 {
            guard i + width <= b.count else { throw fail("it is too short") }
            var value: Int64 = 0
            for _ in 0..<width {
                let c = b[i]
                guard c >= 0x30, c <= 0x39 else { throw fail("expected a digit at position \(i + 1)") }
                value = value * 10 + Int64(c - 0x30)
                i += 1
            }
            return value
        }
        func expect(_ chars: String) throws(PlaneCoreError) {
            guard i < b.count, chars.utf8.contains(b[i]) else { throw fail("expected '\(chars.prefix(1))' at position \(i + 1)") }
            i += 1
        }
        let year = try number(4); try expect("-")
        let month = try number(2); try expect("-")
        let day = try number(2); try expect("Tt ")
        let hour = try number(2); try expect(":")
        let minute = try number(2); try expect(":")
        var second = try number(2)
        var nanos: Int64 = 0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                if digits < 9 { nanos = nanos * 10 + Int64(b[i] - 0x30) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { throw fail("the fraction has no digits") }
            guard digits <= 9 else { throw fail("more than 9 fraction digits (nanoseconds are the limit)") }
            for _ in digits..<9 { nanos *= 10 }
        }
        guard i < b.count else { throw fail("the UTC offset is missing (add 'Z')") }
        var offsetSeconds: Int64 = 0
        switch b[i] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            i += 1
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            let negative = b[i] == UInt8(ascii: "-")
            i += 1
            let oh = try number(2); try expect(":")
            let om = try number(2)
            guard oh < 24, om < 60 else { throw fail("the UTC offset is out of range") }
            offsetSeconds = (oh * 3600 + om * 60) * (negative ? -1 : 1)
        default:
            throw fail("expected 'Z' or an offset such as '+01:00'")
        }
        guard i == b.count else { throw fail("unexpected text after the offset") }
        guard (1...12).contains(month) else { throw fail("month \(month) is out of range") }
        guard day >= 1, day <= Self.daysInMonth(year: year, month: month) else { throw fail("day \(day) is out of range") }
        guard hour < 24, minute < 60, second <= 60 else { throw fail("the time of day is out of range") }
        if second == 60 { second = 59; nanos += 1_000_000_000 - 1 } // leap second: clamp like chrono's UTC view
        let days = Self.days(fromCivil: year, month, day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        self.init(secondsSinceEpoch: seconds, nanoseconds: UInt32(min(nanos, 999_999_999)))
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(rfc3339: text) } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message, underlyingError: error))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rfc3339)
    }

    // MARK: Calendar (proleptic Gregorian, Howard Hinnant's algorithms)

    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    static func daysInMonth(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}
