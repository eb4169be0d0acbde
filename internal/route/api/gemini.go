package api

func (s *Server) registerGemini() {}
