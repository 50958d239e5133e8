-- Deletes a consumer from a group if it holds no pending entries.
-- KEYS[1]: the stream. ARGV[1]: group. ARGV[2]: consumer.
-- Returns -1 if there is no such stream, group or consumer, 0 when deleted,
-- else the number of entries the consumer still holds.
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(consumers) == 'table' and consumers.err and not missing(consumers) then
  return redis.error_reply(consumers.err)
end
if type(consumers) ~= 'table' or consumers.err then
  return -1
end
for _, c in ipairs(consumers) do
  if field_of(c, 'name') == ARGV[2] then
    local pending = field_of(c, 'pending')
    if pending > 0 then
      return pending
    end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    return 0
  end
end
return -1
