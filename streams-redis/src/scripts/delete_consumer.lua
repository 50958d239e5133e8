-- Deletes a consumer from a group if it holds no pending entries.
-- KEYS[1]: the stream. ARGV[1]: group. ARGV[2]: consumer.
-- Returns -1 if there is no such stream, group or consumer, 0 when deleted,
-- else the number of entries the consumer still holds.
local consumers = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(consumers) ~= 'table' or consumers.err then
  return -1
end
for _, c in ipairs(consumers) do
  local name, pending
  for i = 1, #c, 2 do
    if c[i] == 'name' then
      name = c[i + 1]
    elseif c[i] == 'pending' then
      pending = c[i + 1]
    end
  end
  if name == ARGV[2] then
    if pending > 0 then
      return pending
    end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    return 0
  end
end
return -1
