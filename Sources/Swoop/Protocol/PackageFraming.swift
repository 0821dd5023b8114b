// Temporary stub, replaced by the framing work.
public enum PackageLengthType: Sendable, Equatable {
    case int8, uint8, int16BE, uint16BE, int16LE, uint16LE, int32BE, uint32BE, int32LE, uint32LE
    public init?(swooleCode: Character) { return nil }
    public var size: Int { 4 }
}
public enum FramingError: Error, Equatable { case packageTooLong(length: Int, max: Int); case negativeLength(Int) }
